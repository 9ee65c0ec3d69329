/**
 * Who may change a project's servers and saved work: the caller's GitLab token, from the hub,
 * and their access level in the project, the same rule for launching and for deleting autosaves.
 */
import { ApiError } from '../core/errors.js'
import { accessLevel, type GitLabProject } from '../gitlab/client.js'
import type { JupyterHubClient } from '../hub/client.js'

/** The user's GitLab token, from the hub's `auth_state`; 401 asking to log in again without one. */
export async function gitlabTokenOf(hub: JupyterHubClient, user: string): Promise<string> {
  const token = (await hub.getUser(user))?.auth_state?.access_token
  if (typeof token !== 'string' || token === '') {
    throw new ApiError(
      401,
      'GITLAB_TOKEN_MISSING',
      'Your GitLab login is not known to JupyterHub; please log in again.',
    )
  }
  return token
}

/**
 * Refuses (403) a caller below `minAccessLevel` in the project; `action` names what they
 * tried, e.g. "Launching a server for".
 */
export function requireChangeAccess(project: GitLabProject, minAccessLevel: number, action: string): void {
  if (accessLevel(project) < minAccessLevel) {
    throw new ApiError(
      403,
      'ACCESS_DENIED',
      `${action} ${project.path_with_namespace} needs at least Developer access in GitLab.`,
    )
  }
}
