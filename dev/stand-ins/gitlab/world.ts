/**
 * What the GitLab stand-in serves (users, projects, tokens, images) and the access rules
 * shared by its protocols.
 */

export type AccessLevel = 0 | 5 | 10 | 15 | 20 | 30 | 40 | 50

/** Named access levels, as GitLab numbers them. */
export const Access = {
  none: 0,
  guest: 10,
  reporter: 20,
  developer: 30,
  maintainer: 40,
  owner: 50,
} as const satisfies Record<string, AccessLevel>

export interface GitLabUser {
  id: number
  username: string
  name: string
  email: string
  /** A personal/OAuth access token that authenticates this user. */
  token: string
  /** Scopes of `token` (default `api`, which grants everything a non-admin needs). */
  scopes?: string[]
}

/** An OAuth application (GitLab: Admin area or user settings, "Applications"). */
export interface GitLabOAuthApplication {
  /** The client id. */
  uid: string
  secret: string
}

/** An access token issued through OAuth: it carries scopes, expires and can be refreshed once. */
export interface GitLabOAuthToken {
  accessToken: string
  refreshToken: string
  username: string
  scopes: string[]
  applicationUid: string
  /** Seconds since the epoch. */
  createdAt: number
  /** Seconds the access token lives (GitLab: 7200, fixed). */
  expiresIn: number
  /** Set once the refresh token was used (or the pair revoked): both tokens are dead. */
  revoked?: boolean
}

export interface GitLabNamespace {
  id: number
  name: string
  path: string
  /** e.g. `science/lab` */
  fullPath: string
  kind: 'group' | 'user'
}

/** How a user reaches a project: directly (`project`) and/or through a group (`group`). */
export interface GitLabMembership {
  project?: AccessLevel
  group?: AccessLevel
}

export interface GitLabProject {
  id: number
  name: string
  path: string
  namespace: GitLabNamespace
  visibility: 'private' | 'internal' | 'public'
  defaultBranch: string
  /** Absolute path of the bare repository; must end in `/<namespace full path>/<path>.git`. */
  repoDir: string
  /** Keyed by username. */
  members: Record<string, GitLabMembership>
}

/**
 * What the stand-in serves. It is read on every request, so a test may change it while the
 * stand-in runs (e.g. push an image to `images`, revoke a token).
 */
export interface GitLabWorld {
  users: Record<string, GitLabUser>
  projects: Record<string, GitLabProject>
  /** Images in the container registry, `<repository path>:<tag>`, e.g. `group/project:0123abc`. */
  images: string[]
  /** Tokens GitLab knows but has revoked: 401 with an `invalid_token` body. */
  revokedTokens?: string[]
  /** Tokens GitLab knows but that have expired (any kind): 401 `invalid_token`, "Token is expired". */
  expiredTokens?: string[]
  /** OAuth applications whose credentials `POST /oauth/token` accepts. */
  oauthApplications?: GitLabOAuthApplication[]
  /** Tokens issued through OAuth (see `GitLabStandIn.issueToken`). */
  oauthTokens?: GitLabOAuthToken[]
}

export interface RecordedRequest {
  server: 'gitlab' | 'registry'
  method: string
  /** Raw path, as sent (still percent-encoded), without the query string. */
  path: string
  query: string
  status: number
  /** Whether the request carried credentials (an `Authorization` or `Private-Token` header). */
  credentials: boolean
}

/** Makes matching requests fail, to exercise a client's error handling. */
export interface GitLabFault {
  server?: 'gitlab' | 'registry'
  method?: string
  /** Tested against the raw path. */
  path: RegExp
  /** Answer with this status and body (JSON); omit to only delay. */
  status?: number
  body?: unknown
  /** Wait this long before answering. */
  delayMs?: number
  /** Destroy the connection instead of answering. */
  hangUp?: boolean
}

export interface GitLabStandIn {
  /** Base URL, e.g. `http://127.0.0.1:40123` (API under `/api/v4`). */
  url: string
  /** `127.0.0.1:PORT` of the registry listener (plain HTTP). */
  registryHost: string
  requests: RecordedRequest[]
  /** Faults checked in order before routing; edit freely. */
  faults: GitLabFault[]
  /** Issues an OAuth token pair to a user, as GitLab's authorization code grant would. */
  issueToken(
    username: string,
    options?: { scopes?: string[]; expiresIn?: number; applicationUid?: string },
  ): GitLabOAuthToken
  /** Makes a token (any kind) expired from now on. */
  expireToken(token: string): void
  close(): Promise<void>
}

export function pathWithNamespace(p: GitLabProject): string {
  return `${p.namespace.fullPath}/${p.path}`
}

export function accessLevel(p: GitLabProject, user: GitLabUser | null): number {
  if (!user) return 0
  const m = p.members[user.username]
  return Math.max(m?.project ?? 0, m?.group ?? 0)
}

export function canSee(p: GitLabProject, user: GitLabUser | null): boolean {
  if (p.visibility === 'public') return true
  if (p.visibility === 'internal') return user !== null
  return accessLevel(p, user) >= Access.guest
}

/** `download_code` and `read_container_image`: Reporter and up on private projects. */
export function canReadCode(p: GitLabProject, user: GitLabUser | null): boolean {
  if (!canSee(p, user)) return false
  if (p.visibility !== 'private') return true
  return accessLevel(p, user) >= Access.reporter
}

export function findProject(world: GitLabWorld, id: string): GitLabProject | undefined {
  const projects = Object.values(world.projects)
  if (/^\d+$/.test(id)) return projects.find((p) => p.id === Number(id))
  const wanted = id.toLowerCase()
  return projects.find((p) => pathWithNamespace(p).toLowerCase() === wanted)
}

export function gitRoot(p: GitLabProject): string {
  const suffix = `/${pathWithNamespace(p)}.git`
  if (!p.repoDir.endsWith(suffix)) throw new Error(`repoDir of ${pathWithNamespace(p)} must end in ${suffix}`)
  return p.repoDir.slice(0, -suffix.length)
}

/** State shared by the stand-in's listeners; `base` and `registryHost` are set once they listen. */
export interface StandInContext {
  world: GitLabWorld
  /** Base URL of the GitLab listener, e.g. `http://127.0.0.1:40123`. */
  base: string
  /** `127.0.0.1:PORT` of the registry listener. */
  registryHost: string
  /** Registry bearer tokens issued by /jwt/auth: token -> repositories it may pull. */
  registryTokens: Map<string, Set<string>>
  /** The hooks receive-pack runs (GitLab's LFS integrity check). */
  hooksDir: string
}
