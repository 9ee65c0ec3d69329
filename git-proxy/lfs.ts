/**
 * Git LFS batch answers carry, per action, the headers the client must send with the transfer:
 * GitLab puts its credentials there. They are removed before the answer reaches the notebook;
 * the transfer goes through the proxy again (its href is under the repository), which adds the
 * user's credentials itself.
 */

/** `POST <repository>.git/info/lfs/objects/batch` (the `.git`-less form too). */
export function isLfsBatchPath(path: string): boolean {
  return /\/info\/lfs\/objects\/batch$/.test(path)
}

// Authorization, Private-Token, Job-Token, Deploy-Token, Cookie and the like.
const CREDENTIAL_HEADER = /auth|token|cookie/i

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The batch answer with every credential-like header removed from every action. Returns the
 * answer unchanged in shape otherwise; an answer that is not JSON is the caller's error.
 */
export function stripActionCredentials(answer: unknown): { answer: unknown; stripped: number } {
  let stripped = 0
  if (!isRecord(answer) || !Array.isArray(answer.objects)) return { answer, stripped }
  for (const object of answer.objects) {
    if (!isRecord(object) || !isRecord(object.actions)) continue
    for (const action of Object.values(object.actions)) {
      if (!isRecord(action) || !isRecord(action.header)) continue
      for (const name of Object.keys(action.header)) {
        if (CREDENTIAL_HEADER.test(name)) {
          delete action.header[name]
          stripped++
        }
      }
    }
  }
  return { answer, stripped }
}
