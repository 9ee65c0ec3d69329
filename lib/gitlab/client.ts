import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { ApiError, UpstreamError } from '../core/errors.js'
import { HttpClient, type HttpResponse } from '../core/http.js'
import type { UpstreamObserver } from '../core/metrics.js'

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

/** The fields of GitLab's branch resource the service uses. */
export interface GitLabBranch {
  name: string
  commit: { id: string; committed_date: string }
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

/** Scopes that let a token push over git (`write_repository`, or `api` which covers it). */
const pushScopes = ['write_repository', 'api']
/** Pages of 100 branches read at most when listing (a user's autosaves are a handful). */
const maxBranchPages = 50
const scopeCacheTtlMs = 5 * 60_000

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
  /** GitLab's OAuth provider (Doorkeeper) lives beside the API, not under `/api/v4`. */
  private readonly oauth: HttpClient
  /**
   * The scopes of each token (by hash; a token's scopes never change), remembered for a few
   * minutes; concurrent first uses share one lookup, and a failed lookup is not remembered.
   */
  private readonly scopes = new LRUCache<string, { scopes: string[] | null }, string>({
    max: 10_000,
    ttl: scopeCacheTtlMs,
    fetchMethod: async (_key, _stale, { context: token }) => ({ scopes: await this.lookUpScopes(token) }),
  })

  constructor(options: { url: string; timeoutMs?: number; observe?: UpstreamObserver }) {
    this.http = new HttpClient({
      upstream: 'GitLab',
      baseUrl: `${options.url}/api/v4`,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    })
    this.oauth = new HttpClient({
      upstream: 'GitLab',
      baseUrl: options.url,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    })
  }

  private get(token: string, path: string, query?: Record<string, string | number>): Promise<HttpResponse> {
    return this.call('GET', token, path, { query })
  }

  /**
   * Calls the API as the user. The answers every call maps the same way are thrown here: a
   * rejected token, a missing scope (`missingScope` says which, for the message), a busy or
   * failing GitLab.
   */
  private async call(
    method: 'GET' | 'DELETE',
    token: string,
    path: string,
    options: { query?: Record<string, string | number>; missingScope?: string } = {},
  ): Promise<HttpResponse> {
    const response = await this.http.request(method, path, {
      operation: gitlabOperation(method, path),
      headers: { authorization: `Bearer ${token}` },
      query: options.query,
    })
    if (response.status === 401) throw tokenRejected()
    if (
      response.status === 403 &&
      (response.json as { error?: unknown } | undefined)?.error === 'insufficient_scope'
    ) {
      // Not the user's doing and not cured by logging in again: the GitLab application lacks a scope.
      throw new ApiError(
        403,
        'GITLAB_SCOPE_MISSING',
        options.missingScope ??
          'Your GitLab login may not read projects through the API (it lacks the read_api scope); ' +
            'the GitLab application the hub uses must grant it.',
      )
    }
    if (response.status === 429) {
      throw new UpstreamError(
        'GitLab',
        'unavailable',
        `${method} ${path} answered 429`,
        'GitLab is busy; try again shortly.',
      )
    }
    if (response.status >= 500) throw this.http.unexpected(method, path, response)
    return response
  }

  /** The project as the user sees it; 404 when it does not exist or the user cannot see it. */
  async getProject(token: string, fullPath: string): Promise<GitLabProject> {
    const response = await this.get(token, `/projects/${seg(fullPath)}`)
    if (response.status === 404 || response.status === 403) throw projectNotFound(fullPath)
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
      throw notInProject('BRANCH_NOT_FOUND', `branch ${branch}`, project)
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
      throw notInProject('COMMIT_NOT_FOUND', `commit ${sha}`, project)
    }
    if (response.status === 403) throw codeForbidden(project)
    throw this.http.unexpected('GET', '/projects/:id/repository/commits/:sha', response)
  }

  /**
   * The project's branches whose names start with `prefix` (GitLab's `search=^prefix`, which
   * is looser, so the prefix is checked again here), every page of them.
   */
  async listBranches(token: string, project: GitLabProject, prefix: string): Promise<GitLabBranch[]> {
    const path = `/projects/${project.id}/repository/branches`
    const branches: GitLabBranch[] = []
    let page: string | undefined = '1'
    for (let pages = 0; page && pages < maxBranchPages; pages++) {
      const response = await this.get(token, path, { search: `^${prefix}`, per_page: 100, page })
      if (response.status === 404) throw projectNotFound(project.path_with_namespace)
      if (response.status === 403) throw codeForbidden(project)
      const items = response.json
      if (response.status !== 200 || !Array.isArray(items)) {
        throw this.http.unexpected('GET', '/projects/:id/repository/branches', response)
      }
      for (const item of items as Partial<GitLabBranch>[]) {
        if (
          typeof item?.name === 'string' &&
          item.name.startsWith(prefix) &&
          typeof item.commit?.committed_date === 'string'
        ) {
          branches.push(item as GitLabBranch)
        }
      }
      const next = response.headers['x-next-page']
      page = typeof next === 'string' && /^\d+$/.test(next) ? next : undefined
    }
    return branches
  }

  /** Deletes a branch; false when the project has no such branch. */
  async deleteBranch(token: string, project: GitLabProject, branch: string): Promise<boolean> {
    const response = await this.call(
      'DELETE',
      token,
      `/projects/${project.id}/repository/branches/${seg(branch)}`,
      {
        missingScope:
          'Your GitLab login may not delete branches (it lacks the api scope); ' +
          'the GitLab application the hub uses must grant the api and write_repository scopes.',
      },
    )
    if (response.status === 204 || response.status === 200) return true
    if (response.status === 404) return false
    if (response.status === 403 || response.status === 400) {
      // Developers may not delete protected branches, and nobody the default branch.
      throw new ApiError(
        403,
        'ACCESS_DENIED',
        `GitLab does not let you delete the branch ${branch} of ${project.path_with_namespace}.`,
      )
    }
    throw this.http.unexpected('DELETE', '/projects/:id/repository/branches/:branch', response)
  }

  /**
   * Refuses a token that could not push the user's work to an autosave branch when the server
   * stops (it needs `write_repository` or `api`), rather than letting that work be lost then.
   * A token whose scopes GitLab does not tell passes.
   */
  async requirePushScope(token: string): Promise<void> {
    const scopes = await this.tokenScopes(token)
    if (scopes && !scopes.some((scope) => pushScopes.includes(scope))) {
      throw new ApiError(
        403,
        'GITLAB_SCOPE_MISSING',
        'Your GitLab login may not push to GitLab (it lacks the write_repository and api scopes), so your ' +
          'work could not be saved when the server stops; the GitLab application the hub uses must grant ' +
          'the api and write_repository scopes, then log in again.',
      )
    }
  }

  /** The token's scopes; null when GitLab does not tell. */
  async tokenScopes(token: string): Promise<string[] | null> {
    const key = createHash('sha256').update(token).digest('base64')
    return (await this.scopes.fetch(key, { context: token }))?.scopes ?? null
  }

  /**
   * An OAuth token's scopes come from Doorkeeper's `GET /oauth/token/info`; it does not know
   * personal access tokens (401), whose scopes `GET /personal_access_tokens/self` tells.
   * Null when neither answers (an older GitLab, a proxy that hides `/oauth`).
   */
  private async lookUpScopes(token: string): Promise<string[] | null> {
    const headers = { authorization: `Bearer ${token}` }
    const info = await this.oauth.request('GET', '/oauth/token/info', {
      headers,
      operation: 'GET /oauth/token/info',
    })
    if (info.status === 200) return scopeList((info.json as { scope?: unknown } | undefined)?.scope)
    if (info.status >= 500) throw this.oauth.unexpected('GET', '/oauth/token/info', info)
    if (info.status !== 401) return null
    const pat = await this.http.request('GET', '/personal_access_tokens/self', {
      headers,
      operation: 'GET /personal_access_tokens/self',
    })
    if (pat.status === 401) throw tokenRejected()
    if (pat.status === 200) return scopeList((pat.json as { scopes?: unknown } | undefined)?.scopes)
    if (pat.status >= 500) throw this.http.unexpected('GET', '/personal_access_tokens/self', pat)
    return null
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

function tokenRejected(): ApiError {
  return new ApiError(
    401,
    'GITLAB_TOKEN_REJECTED',
    'GitLab did not accept your GitLab credentials; please log in again.',
  )
}

function projectNotFound(fullPath: string): ApiError {
  return new ApiError(
    404,
    'PROJECT_NOT_FOUND',
    `The project ${fullPath} does not exist or you cannot see it.`,
  )
}

/** Doorkeeper answers scopes as a list; a space-separated string is accepted too. */
function scopeList(value: unknown): string[] | null {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean)
  if (Array.isArray(value)) return value.filter((scope): scope is string => typeof scope === 'string')
  return null
}

/** A branch or commit the project lacks (GitLab answers 404, or 400 for a malformed name). */
function notInProject(
  code: 'BRANCH_NOT_FOUND' | 'COMMIT_NOT_FOUND',
  what: string,
  project: GitLabProject,
): ApiError {
  return new ApiError(404, code, `The ${what} does not exist in ${project.path_with_namespace}.`)
}

function codeForbidden(project: GitLabProject): ApiError {
  return new ApiError(
    403,
    'ACCESS_DENIED',
    `You may see ${project.path_with_namespace} but not its code; launching needs Developer access.`,
  )
}
