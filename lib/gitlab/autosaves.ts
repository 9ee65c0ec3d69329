import type { GitLabBranch } from './client.js'

/**
 * Autosave branches (the README's "Autosave"): `renku/autosave/<user>/<branch>/<commit_sha[:7]>/<head[:7]>`,
 * pushed when a server with unsaved work stops, restored by the next launch of that commit.
 */

/** What the API tells about one autosave. */
export interface Autosave {
  /** The autosave branch. */
  name: string
  /** The launch's branch. */
  branch: string
  /** The launch's commit, 7 characters. */
  commit: string
  /** When the autosave commit was made, ISO 8601. */
  date: string
  /** Persistent volumes are not supported: always false. */
  pvs: false
}

/** The prefix of every autosave branch of a user. */
export function userAutosavePrefix(user: string): string {
  return `renku/autosave/${user}/`
}

/** The prefix of a user's autosaves of one launch (branch and commit). */
export function launchAutosavePrefix(user: string, branch: string, commitSha: string): string {
  return `${userAutosavePrefix(user)}${branch}/${commitSha.slice(0, 7).toLowerCase()}/`
}

const shortSha = /^[0-9a-f]{7}$/

/** The launch an autosave branch of this user belongs to; null when it is not one of theirs. */
export function parseAutosaveName(name: string, user: string): { branch: string; commit: string } | null {
  const prefix = userAutosavePrefix(user)
  if (!name.startsWith(prefix)) return null
  const parts = name.slice(prefix.length).split('/')
  const head = parts.pop()
  const commit = parts.pop()
  // The launch's branch may itself hold slashes: everything between the user and the two shas.
  const branch = parts.join('/')
  if (!head || !commit || !shortSha.test(head) || !shortSha.test(commit) || branch === '') return null
  if (parts.some((part) => part === '')) return null
  return { branch, commit }
}

function timeOf(branch: GitLabBranch): number {
  const time = Date.parse(branch.commit.committed_date)
  return Number.isNaN(time) ? 0 : time
}

/** The user's autosaves among these branches, newest commit first. */
export function autosavesOf(branches: GitLabBranch[], user: string): Autosave[] {
  return branches
    .flatMap((branch) => {
      const parsed = parseAutosaveName(branch.name, user)
      return parsed ? [{ branch, parsed, time: timeOf(branch) }] : []
    })
    .sort((a, b) => b.time - a.time || (a.branch.name < b.branch.name ? 1 : -1))
    .map(({ branch, parsed, time }) => ({
      name: branch.name,
      branch: parsed.branch,
      commit: parsed.commit,
      date: time ? new Date(time).toISOString() : branch.commit.committed_date,
      pvs: false as const,
    }))
}

/** The newest autosave of exactly this launch, to restore; undefined when there is none. */
export function autosaveToRestore(
  branches: GitLabBranch[],
  user: string,
  branch: string,
  commitSha: string,
): string | undefined {
  const commit = commitSha.slice(0, 7).toLowerCase()
  // A launch branch holding slashes could share the prefix of another: compare the parts.
  return autosavesOf(branches, user).find((save) => save.branch === branch && save.commit === commit)?.name
}
