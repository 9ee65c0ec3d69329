/**
 * Which requests are "for the launch's repository": only those get the user's credentials.
 * Anything ambiguous (dot segments, encoded slashes, undecodable escapes, another host or port,
 * another scheme) is out of scope, so a mistake costs a failed request, never a leaked token.
 */

/** The GitLab origin and repository path a proxy serves, from the project's `http_url_to_repo`. */
export interface Repository {
  /** `http:` or `https:` */
  protocol: 'http:' | 'https:'
  /** Host name as written in the URL, lower case, without brackets for IPv6. */
  hostname: string
  /** Port number, the scheme's default when the URL has none. */
  port: number
  /** `http://host[:port]`, as undici wants it. */
  origin: string
  /** The repository path with `.git`, e.g. `/ns/project.git`. */
  gitPath: string
  /** The same without `.git`, e.g. `/ns/project`. */
  barePath: string
}

export function parseRepositoryUrl(raw: string): Repository {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new Error(`repository URL ${JSON.stringify(raw)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`repository URL ${JSON.stringify(raw)} must be http:// or https://`)
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new Error('repository URL must not carry credentials, a query or a fragment')
  }
  const path = url.pathname.replace(/\/+$/, '')
  const segments = path.split('/').slice(1)
  if (segments.length < 2 || segments.some((segment) => segment === '' || segment.includes('%'))) {
    throw new Error(`repository URL ${JSON.stringify(raw)} must name a project as /namespace/project.git`)
  }
  const barePath = path.endsWith('.git') ? path.slice(0, -'.git'.length) : path
  return {
    protocol: url.protocol,
    hostname: url.hostname.replace(/^\[|\]$/g, '').toLowerCase(),
    port: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
    origin: url.origin,
    gitPath: `${barePath}.git`,
    barePath,
  }
}

/** Requests GitLab serves for a repository path without `.git` (it redirects some to `.git`). */
const BARE_PATH_GIT_ROUTES = ['/info/', '/git-upload-pack', '/git-receive-pack', '/gitlab-lfs/']

/**
 * Whether a request path (as sent on the wire, percent-encoded, without the query) lies inside
 * the repository: `/ns/project.git` itself, anything under `/ns/project.git/`, and git's and Git
 * LFS's routes under `/ns/project` without `.git`.
 */
export function isInsideRepository(repository: Repository, rawPath: string): boolean {
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    return false
  }
  // Anything GitLab could read differently from us: an encoded slash, a backslash, a NUL.
  if (/[\\\0]/.test(path) || /%2f/i.test(rawPath)) return false
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) return false
  if (path === repository.gitPath || path.startsWith(`${repository.gitPath}/`)) return true
  return BARE_PATH_GIT_ROUTES.some((route) => path.startsWith(`${repository.barePath}${route}`))
}

/** Whether `hostname:port` (from a CONNECT target or an absolute URL) is the repository's GitLab. */
export function isRepositoryHost(repository: Repository, hostname: string, port: number): boolean {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase() === repository.hostname && port === repository.port
}
