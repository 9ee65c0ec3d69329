import { ApiError, UpstreamError } from './errors.js'
import { HttpClient, type HttpResponse } from './http.js'
import type { UpstreamObserver } from './metrics.js'

/** The fields of GitLab's project resource the service uses. */
export interface GitLabProject {
  id: number
  path: string
  path_with_namespace: string
  default_branch: string | null
  http_url_to_repo: string
  container_registry_image_prefix?: string | null
  permissions?: {
    project_access?: { access_level: number } | null
    group_access?: { access_level: number } | null
  } | null
}

interface RegistryRepository {
  id: number
  name: string
  path: string
}

const seg = encodeURIComponent

/** GitLab resources whose next path segment is an id or name; the metrics show a placeholder instead. */
const idAfter = new Map([
  ['projects', '{id}'],
  ['branches', '{branch}'],
  ['commits', '{sha}'],
  ['repositories', '{repository_id}'],
  ['tags', '{tag}'],
  ['users', '{id}'],
  ['files', '{file_path}'],
])

/** The operation pattern of a GitLab API call, e.g. `GET /projects/{id}/repository/branches/{branch}`. */
export function gitlabOperation(method: string, path: string): string {
  const parts = (path.split('?')[0] ?? '').split('/')
  const pattern = parts.map((part, i) => {
    const placeholder = idAfter.get(parts[i - 1] ?? '')
    if (placeholder) return placeholder
    // Anything else that is not a plain resource word is hidden too, so no value becomes a label.
    return part === '' || /^[a-z_]+$/.test(part) ? part : '{}'
  })
  return `${method} ${pattern.join('/')}`
}

/** The user's effective access level: the highest of direct and group membership. */
export function accessLevel(project: GitLabProject): number {
  const levels = [project.permissions?.project_access, project.permissions?.group_access]
    .map((access) => access?.access_level)
    .filter((level): level is number => typeof level === 'number')
  return Math.max(0, ...levels)
}

/** GitLab's REST API v4, always called with the user's own GitLab token. */
export class GitLabClient {
  private readonly http: HttpClient

  constructor(options: { url: string; timeoutMs?: number; observe?: UpstreamObserver }) {
    this.http = new HttpClient({
      upstream: 'GitLab',
      baseUrl: `${options.url}/api/v4`,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    })
  }

  private async get(
    token: string,
    path: string,
    query?: Record<string, string | number>,
  ): Promise<HttpResponse> {
    const response = await this.http.request('GET', path, {
      operation: gitlabOperation('GET', path),
      headers: { authorization: `Bearer ${token}` },
      query,
    })
    if (response.status === 401) {
      throw new ApiError(
        401,
        'GITLAB_TOKEN_REJECTED',
        'GitLab did not accept your GitLab credentials; please log in again.',
      )
    }
    if (
      response.status === 403 &&
      (response.json as { error?: unknown } | undefined)?.error === 'insufficient_scope'
    ) {
      // Not the user's doing and not cured by logging in again: the GitLab application lacks a scope.
      throw new ApiError(
        403,
        'GITLAB_SCOPE_MISSING',
        'Your GitLab login may not read projects through the API (it lacks the read_api scope); ' +
          'the GitLab application the hub uses must grant it.',
      )
    }
    if (response.status === 429) {
      throw new UpstreamError(
        'GitLab',
        'unavailable',
        `GET ${path} answered 429`,
        'GitLab is busy; try again shortly.',
      )
    }
    if (response.status >= 500) throw this.http.unexpected('GET', path, response)
    return response
  }

  /** The project as the user sees it; 404 when it does not exist or the user cannot see it. */
  async getProject(token: string, fullPath: string): Promise<GitLabProject> {
    const response = await this.get(token, `/projects/${seg(fullPath)}`)
    if (response.status === 404 || response.status === 403) {
      throw new ApiError(
        404,
        'PROJECT_NOT_FOUND',
        `The project ${fullPath} does not exist or you cannot see it.`,
      )
    }
    const project = response.json as GitLabProject | undefined
    if (response.status !== 200 || typeof project?.id !== 'number') {
      throw this.http.unexpected('GET', '/projects/:id', response)
    }
    return project
  }

  async requireBranch(token: string, project: GitLabProject, branch: string): Promise<void> {
    const response = await this.get(token, `/projects/${project.id}/repository/branches/${seg(branch)}`)
    if (response.status === 200) return
    if (response.status === 404 || response.status === 400) {
      throw new ApiError(
        404,
        'BRANCH_NOT_FOUND',
        `The branch ${branch} does not exist in ${project.path_with_namespace}.`,
      )
    }
    if (response.status === 403) throw codeForbidden(project)
    throw this.http.unexpected('GET', '/projects/:id/repository/branches/:branch', response)
  }

  /** The commit's full sha, lower-case; 404 when the project has no such commit. */
  async resolveCommit(token: string, project: GitLabProject, sha: string): Promise<string> {
    const wanted = sha.toLowerCase()
    const response = await this.get(token, `/projects/${project.id}/repository/commits/${seg(wanted)}`)
    const commit = response.json as { id?: unknown } | undefined
    // The API also resolves branch and tag names; only a commit whose id starts with the sha counts.
    if (
      response.status === 200 &&
      typeof commit?.id === 'string' &&
      commit.id.toLowerCase().startsWith(wanted)
    ) {
      return commit.id.toLowerCase()
    }
    if (response.status === 200 || response.status === 404 || response.status === 400) {
      throw new ApiError(
        404,
        'COMMIT_NOT_FOUND',
        `The commit ${sha} does not exist in ${project.path_with_namespace}.`,
      )
    }
    if (response.status === 403) throw codeForbidden(project)
    throw this.http.unexpected('GET', '/projects/:id/repository/commits/:sha', response)
  }

  /**
   * Whether the project's own container registry image has this tag. A registry the
   * user may not read, or that is disabled, counts as "no".
   */
  async hasImageTag(token: string, project: GitLabProject, tag: string): Promise<boolean> {
    const repositories = await this.get(token, `/projects/${project.id}/registry/repositories`, {
      per_page: 100,
    })
    if (repositories.status !== 200) return false
    const root = (repositories.json as RegistryRepository[] | undefined)?.find(
      (repository) => repository.name === '' && repository.path === project.path_with_namespace.toLowerCase(),
    )
    if (!root) return false
    const response = await this.get(
      token,
      `/projects/${project.id}/registry/repositories/${root.id}/tags/${seg(tag)}`,
    )
    return response.status === 200
  }

  /** Throws an UpstreamError when GitLab does not answer; any HTTP answer means it is up. */
  async ping(): Promise<void> {
    const response = await this.http.request('GET', '/version', {
      operation: 'GET /version',
      timeoutMs: 3000,
    })
    if (response.status >= 500) throw this.http.unexpected('GET', '/version', response)
  }
}

function codeForbidden(project: GitLabProject): ApiError {
  return new ApiError(
    403,
    'ACCESS_DENIED',
    `You may see ${project.path_with_namespace} but not its code; launching needs Developer access.`,
  )
}
