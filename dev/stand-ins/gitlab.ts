/**
 * A GitLab stand-in for tests: the parts of REST API v4 the service uses, git smart HTTP
 * (served by git's own `git-http-backend` from real bare repositories) and a second listener
 * speaking the Docker Registry HTTP API v2 with GitLab's token flow.
 *
 * Shapes and error bodies follow GitLab's docs and source; see
 * the GitLab section of the project's API notes.
 */
import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

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

interface Actor {
  user: GitLabUser | null
  /** The token's scopes; empty when anonymous. */
  scopes: string[]
}

type Reply = { status: number; body?: unknown; headers?: Record<string, string> }

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(`HTTP ${status}`)
  }
}

const notFound = (what: string) => new HttpError(404, { message: `404 ${what} Not Found` })
const routeMiss = () => new HttpError(404, { message: '404 Not Found' })
const forbidden = () => new HttpError(403, { message: '403 Forbidden' })
const unauthorized = () => new HttpError(401, { message: '401 Unauthorized' })

const REVOKED = 'Token was revoked. You have to re-authorize from the user.'
const EXPIRED = 'Token is expired. You can either do re-authorization or token refresh.'
const FIXED_DATE = '2026-01-01T10:00:00.000Z'
const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json'

function tokenFromRequest(req: http.IncomingMessage, query: URLSearchParams): string | undefined {
  const auth = req.headers.authorization
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim()
  const priv = req.headers['private-token']
  if (typeof priv === 'string' && priv !== '') return priv
  return query.get('private_token') ?? query.get('access_token') ?? undefined
}

function basicCredentials(req: http.IncomingMessage): { username: string; password: string } | undefined {
  const auth = req.headers.authorization
  if (!auth || !/^basic\s+/i.test(auth)) return undefined
  const decoded = Buffer.from(auth.replace(/^basic\s+/i, ''), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

type TokenCheck =
  | { ok: true; user: GitLabUser; scopes: string[]; oauth?: GitLabOAuthToken }
  | { ok: false; why: 'unknown' | 'revoked' | 'expired' }

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** What a token is: a user's own token, an OAuth token (live, expired or used up), or unknown. */
function checkToken(world: GitLabWorld, token: string): TokenCheck {
  if (world.revokedTokens?.includes(token)) return { ok: false, why: 'revoked' }
  if (world.expiredTokens?.includes(token)) return { ok: false, why: 'expired' }
  const own = Object.values(world.users).find((u) => u.token === token)
  if (own) return { ok: true, user: own, scopes: own.scopes ?? ['api'] }
  const oauth = world.oauthTokens?.find((o) => o.accessToken === token)
  const user = oauth && world.users[oauth.username]
  if (!oauth || !user) return { ok: false, why: 'unknown' }
  if (oauth.revoked) return { ok: false, why: 'revoked' }
  if (nowSeconds() >= oauth.createdAt + oauth.expiresIn) return { ok: false, why: 'expired' }
  return { ok: true, user, scopes: oauth.scopes, oauth }
}

/** Resolves a token to an actor, or throws GitLab's 401 for unknown, revoked and expired tokens. */
function actorFor(world: GitLabWorld, token: string | undefined): Actor {
  if (token === undefined) return { user: null, scopes: [] }
  const check = checkToken(world, token)
  if (check.ok) return { user: check.user, scopes: check.scopes }
  if (check.why === 'unknown') throw unauthorized()
  const description = check.why === 'revoked' ? REVOKED : EXPIRED
  throw new HttpError(
    401,
    { error: 'invalid_token', error_description: description },
    {
      'www-authenticate': `Bearer realm="Protected by OAuth 2.0", error="invalid_token", error_description="${description}"`,
    },
  )
}

/** GitLab's 403 for a token whose scopes do not cover the route (`lib/api/api_guard.rb`). */
function requireScope(actor: Actor, ...accepted: string[]) {
  if (actor.user === null || accepted.some((s) => actor.scopes.includes(s))) return
  throw new HttpError(403, {
    error: 'insufficient_scope',
    error_description: 'The request requires higher privileges than provided by the access token.',
    scope: accepted.join(' '),
  })
}

/** Git over HTTP: the token's user, null when anonymous, 'denied' for a token that does not authenticate. */
function gitUser(world: GitLabWorld, req: http.IncomingMessage): TokenCheck | null {
  const creds = basicCredentials(req)
  return creds ? checkToken(world, creds.password) : null
}

function pathWithNamespace(p: GitLabProject): string {
  return `${p.namespace.fullPath}/${p.path}`
}

function accessLevel(p: GitLabProject, user: GitLabUser | null): number {
  if (!user) return 0
  const m = p.members[user.username]
  return Math.max(m?.project ?? 0, m?.group ?? 0)
}

function canSee(p: GitLabProject, user: GitLabUser | null): boolean {
  if (p.visibility === 'public') return true
  if (p.visibility === 'internal') return user !== null
  return accessLevel(p, user) >= Access.guest
}

/** `download_code` and `read_container_image`: Reporter and up on private projects. */
function canReadCode(p: GitLabProject, user: GitLabUser | null): boolean {
  if (!canSee(p, user)) return false
  if (p.visibility !== 'private') return true
  return accessLevel(p, user) >= Access.reporter
}

function findProject(world: GitLabWorld, id: string): GitLabProject | undefined {
  const projects = Object.values(world.projects)
  if (/^\d+$/.test(id)) return projects.find((p) => p.id === Number(id))
  const wanted = id.toLowerCase()
  return projects.find((p) => pathWithNamespace(p).toLowerCase() === wanted)
}

function gitRoot(p: GitLabProject): string {
  const suffix = `/${pathWithNamespace(p)}.git`
  if (!p.repoDir.endsWith(suffix)) throw new Error(`repoDir of ${pathWithNamespace(p)} must end in ${suffix}`)
  return p.repoDir.slice(0, -suffix.length)
}

async function git(repoDir: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('git', args, {
      cwd: repoDir,
      env: { ...process.env, GIT_DIR: repoDir, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    })
    return stdout
  } catch {
    return undefined
  }
}

async function resolveCommit(p: GitLabProject, ref: string): Promise<string | undefined> {
  if (ref === '' || ref.startsWith('-')) return undefined
  const out = await git(p.repoDir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])
  return out?.trim() || undefined
}

async function commitJson(base: string, p: GitLabProject, sha: string) {
  const sep = '%x1f'
  const fmt = ['%H', '%s', '%B', '%an', '%ae', '%aI', '%cn', '%ce', '%cI', '%P'].join(sep)
  const out = await git(p.repoDir, ['log', '-1', `--format=${fmt}`, sha])
  if (out === undefined) throw notFound('Commit')
  const [id = sha, title = '', message = '', an, ae, ad, cn, ce, cd, parents = ''] = out
    .replace(/\n$/, '')
    .split('\x1f')
  return {
    id,
    short_id: id.slice(0, 11),
    created_at: cd,
    parent_ids: parents.trim() === '' ? [] : parents.trim().split(' '),
    title,
    message,
    author_name: an,
    author_email: ae,
    authored_date: ad,
    committer_name: cn,
    committer_email: ce,
    committed_date: cd,
    trailers: {},
    extended_trailers: {},
    web_url: `${base}/${pathWithNamespace(p)}/-/commit/${id}`,
  }
}

interface ImageRef {
  repository: string
  tag: string
}

function parseImage(image: string): ImageRef {
  const colon = image.lastIndexOf(':')
  return { repository: image.slice(0, colon).toLowerCase(), tag: image.slice(colon + 1) }
}

function projectOfRepository(world: GitLabWorld, repository: string): GitLabProject | undefined {
  return Object.values(world.projects).find((p) => {
    const pwn = pathWithNamespace(p).toLowerCase()
    return repository === pwn || repository.startsWith(`${pwn}/`)
  })
}

/** The registry repositories of a project, with stable ids. */
function registryRepositories(world: GitLabWorld, p: GitLabProject) {
  const pwn = pathWithNamespace(p).toLowerCase()
  const paths = [...new Set(world.images.map((i) => parseImage(i).repository))]
    .filter((r) => r === pwn || r.startsWith(`${pwn}/`))
    .sort()
  return paths.map((path, i) => ({
    id: p.id * 1000 + i + 1,
    path,
    name: path === pwn ? '' : path.slice(pwn.length + 1),
    tags: world.images
      .map(parseImage)
      .filter((r) => r.repository === path)
      .map((r) => r.tag)
      .sort(),
  }))
}

function manifestFor(repository: string, tag: string): string {
  const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: {
      mediaType: 'application/vnd.docker.container.image.v1+json',
      size: 1469,
      digest: digest(`config ${repository}:${tag}`),
    },
    layers: [
      {
        mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
        size: 2811478,
        digest: digest(`layer ${repository}:${tag}`),
      },
    ],
  })
}

function segmentsOf(rawPath: string): string[] | undefined {
  try {
    return rawPath
      .split('/')
      .slice(1)
      .map((s) => decodeURIComponent(s))
  } catch {
    return undefined
  }
}

/** Starts the stand-in on two random 127.0.0.1 ports. */
export async function startGitLab(world: GitLabWorld): Promise<GitLabStandIn> {
  const requests: RecordedRequest[] = []
  const faults: GitLabFault[] = []
  // Registry bearer tokens issued by /jwt/auth: token -> repositories it may pull.
  const registryTokens = new Map<string, Set<string>>()
  let base = ''
  let registryHost = ''

  function projectJson(p: GitLabProject, actor: Actor) {
    const pwn = pathWithNamespace(p)
    const m = actor.user ? p.members[actor.user.username] : undefined
    const level = (n: number | undefined) =>
      n === undefined || n === 0 ? null : { access_level: n, notification_level: 3 }
    return {
      id: p.id,
      description: null,
      name: p.name,
      name_with_namespace: `${p.namespace.name} / ${p.name}`,
      path: p.path,
      path_with_namespace: pwn,
      created_at: FIXED_DATE,
      default_branch: p.defaultBranch,
      tag_list: [],
      topics: [],
      ssh_url_to_repo: `git@127.0.0.1:${pwn}.git`,
      http_url_to_repo: `${base}/${pwn}.git`,
      web_url: `${base}/${pwn}`,
      readme_url: `${base}/${pwn}/-/blob/${p.defaultBranch}/README.md`,
      avatar_url: null,
      forks_count: 0,
      star_count: 0,
      last_activity_at: FIXED_DATE,
      namespace: {
        id: p.namespace.id,
        name: p.namespace.name,
        path: p.namespace.path,
        kind: p.namespace.kind,
        full_path: p.namespace.fullPath,
        parent_id: null,
        avatar_url: null,
        web_url: `${base}/groups/${p.namespace.fullPath}`,
      },
      container_registry_image_prefix: `${registryHost}/${pwn.toLowerCase()}`,
      container_registry_enabled: true,
      container_registry_access_level: 'enabled',
      visibility: p.visibility,
      archived: false,
      empty_repo: false,
      ...(actor.user
        ? { permissions: { project_access: level(m?.project), group_access: level(m?.group) } }
        : {}),
    }
  }

  function visibleProject(id: string, actor: Actor): GitLabProject {
    const p = findProject(world, id)
    if (!p || !canSee(p, actor.user)) throw notFound('Project')
    return p
  }

  async function apiRoute(req: http.IncomingMessage, seg: string[], actor: Actor): Promise<Reply> {
    const method = req.method === 'HEAD' ? 'GET' : req.method
    if (method === 'DELETE') return deleteRoute(seg, actor)
    if (method !== 'GET') throw routeMiss()
    const [a, b, c, d, e, f, g] = seg
    if (a === 'personal_access_tokens' && b === 'self' && seg.length === 2) return selfToken(req)
    if (a === 'user' && seg.length === 1) {
      if (!actor.user) throw unauthorized()
      requireScope(actor, 'api', 'read_api', 'read_user')
      const u = actor.user
      return {
        status: 200,
        body: {
          id: u.id,
          username: u.username,
          name: u.name,
          email: u.email,
          state: 'active',
          locked: false,
          public_email: null,
          avatar_url: null,
          web_url: `${base}/${u.username}`,
          created_at: FIXED_DATE,
          bot: false,
          two_factor_enabled: false,
          external: false,
        },
      }
    }
    if (a === 'version' && seg.length === 1) {
      if (!actor.user) throw unauthorized()
      return { status: 200, body: { version: '17.0.0-stand-in', revision: 'standin', enterprise: false } }
    }
    if (a !== 'projects' || b === undefined || b === '') throw routeMiss()
    requireScope(actor, 'api', 'read_api')
    if (seg.length === 2) return { status: 200, body: projectJson(visibleProject(b, actor), actor) }

    if (c === 'repository' && (d === 'commits' || d === 'branches') && e !== undefined && seg.length === 5) {
      const p = visibleProject(b, actor)
      if (!canReadCode(p, actor.user)) throw forbidden()
      if (d === 'commits') {
        const sha = await resolveCommit(p, e)
        if (!sha) throw notFound('Commit')
        return { status: 200, body: await commitJson(base, p, sha) }
      }
      if (
        e === '' ||
        e.startsWith('-') ||
        (await git(p.repoDir, ['check-ref-format', '--branch', e])) === undefined
      ) {
        throw new HttpError(400, { message: 'The branch refname is invalid' })
      }
      const sha = await resolveCommit(p, `refs/heads/${e}`)
      if (!sha) throw notFound('Branch')
      return { status: 200, body: await branchJson(p, actor, e, sha) }
    }

    if (c === 'repository' && d === 'branches' && seg.length === 4) {
      const p = visibleProject(b, actor)
      if (!canReadCode(p, actor.user)) throw forbidden()
      return listBranches(req, p, actor)
    }

    if (c === 'registry' && d === 'repositories') {
      const p = visibleProject(b, actor)
      if (!canReadCode(p, actor.user)) throw forbidden()
      const repos = registryRepositories(world, p)
      const query = new URL(req.url ?? '/', 'http://x').searchParams
      const repoJson = (r: (typeof repos)[number]) => ({
        id: r.id,
        name: r.name,
        path: r.path,
        project_id: p.id,
        location: `${registryHost}/${r.path}`,
        created_at: FIXED_DATE,
        cleanup_policy_started_at: null,
        ...(query.get('tags_count') === 'true' ? { tags_count: r.tags.length } : {}),
        ...(query.get('tags') === 'true'
          ? {
              tags: r.tags.map((t) => ({
                name: t,
                path: `${r.path}:${t}`,
                location: `${registryHost}/${r.path}:${t}`,
              })),
            }
          : {}),
      })
      if (seg.length === 4) return { status: 200, body: repos.map(repoJson) }
      const repo = repos.find((r) => String(r.id) === e)
      if (!repo) throw new HttpError(404, { message: '404 Not found' })
      if (seg.length === 5) return { status: 200, body: repoJson(repo) }
      if (f !== 'tags') throw routeMiss()
      const tagJson = (t: string) => ({
        name: t,
        path: `${repo.path}:${t}`,
        location: `${registryHost}/${repo.path}:${t}`,
      })
      if (seg.length === 6) return { status: 200, body: repo.tags.map(tagJson) }
      if (seg.length === 7 && g !== undefined) {
        if (!repo.tags.includes(g)) throw notFound('Tag')
        const digest = `sha256:${createHash('sha256').update(manifestFor(repo.path, g)).digest('hex')}`
        return {
          status: 200,
          body: {
            ...tagJson(g),
            revision: digest.slice(7),
            short_revision: digest.slice(7, 16),
            digest,
            created_at: FIXED_DATE,
            total_size: 2812947,
          },
        }
      }
    }
    throw routeMiss()
  }

  /** The single-branch object of `GET /projects/:id/repository/branches/:branch`. */
  async function branchJson(p: GitLabProject, actor: Actor, name: string, sha: string) {
    return {
      name,
      commit: await commitJson(base, p, sha),
      merged: false,
      protected: name === p.defaultBranch,
      default: name === p.defaultBranch,
      developers_can_push: false,
      developers_can_merge: false,
      can_push:
        accessLevel(p, actor.user) >= (name === p.defaultBranch ? Access.maintainer : Access.developer),
      web_url: `${base}/${pathWithNamespace(p)}/-/tree/${name}`,
    }
  }

  /**
   * `GET /projects/:id/repository/branches`: by name; `search` matches anywhere, `^term` at the
   * start, `term$` at the end (case-insensitively, as GitLab's BranchesFinder); offset pagination.
   */
  async function listBranches(req: http.IncomingMessage, p: GitLabProject, actor: Actor): Promise<Reply> {
    const query = new URL(req.url ?? '/', 'http://x').searchParams
    const out = await git(p.repoDir, [
      'for-each-ref',
      '--format=%(refname:strip=2) %(objectname)',
      'refs/heads',
    ])
    let refs = (out ?? '')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const space = line.lastIndexOf(' ')
        return { name: line.slice(0, space), sha: line.slice(space + 1) }
      })
      .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    const search = query.get('search')
    if (search) {
      const term = search.replace(/^\^/, '').replace(/\$$/, '').toLowerCase()
      refs = refs.filter(({ name }) => {
        const lower = name.toLowerCase()
        if (search.startsWith('^')) return lower.startsWith(term)
        if (search.endsWith('$')) return lower.endsWith(term)
        return lower.includes(term)
      })
    }
    const perPage = Math.min(Math.max(Number.parseInt(query.get('per_page') ?? '', 10) || 20, 1), 100)
    const page = Math.max(Number.parseInt(query.get('page') ?? '', 10) || 1, 1)
    const totalPages = Math.max(Math.ceil(refs.length / perPage), 1)
    const slice = refs.slice((page - 1) * perPage, page * perPage)
    return {
      status: 200,
      body: await Promise.all(slice.map(({ name, sha }) => branchJson(p, actor, name, sha))),
      headers: {
        'x-page': String(page),
        'x-per-page': String(perPage),
        'x-total': String(refs.length),
        'x-total-pages': String(totalPages),
        'x-next-page': page < totalPages ? String(page + 1) : '',
        'x-prev-page': page > 1 ? String(page - 1) : '',
      },
    }
  }

  /**
   * `DELETE /projects/:id/repository/branches/:branch`: a token with `api` and Developer access
   * (`authorize_push_project`); never the default branch (400); the branch must exist (404).
   */
  async function deleteRoute(seg: string[], actor: Actor): Promise<Reply> {
    const [a, b, c, d, e] = seg
    if (a !== 'projects' || !b || c !== 'repository' || d !== 'branches' || !e || seg.length !== 5) {
      throw routeMiss()
    }
    if (!actor.user) throw unauthorized()
    requireScope(actor, 'api')
    const p = visibleProject(b, actor)
    if (accessLevel(p, actor.user) < Access.developer) throw forbidden()
    if (e.startsWith('-') || !(await resolveCommit(p, `refs/heads/${e}`))) throw notFound('Branch')
    if (e === p.defaultBranch) {
      throw new HttpError(400, { message: 'The default branch of a project cannot be deleted.' })
    }
    if ((await git(p.repoDir, ['update-ref', '-d', `refs/heads/${e}`])) === undefined) {
      throw new HttpError(500, { message: '500 Internal Server Error' })
    }
    return { status: 204 }
  }

  /**
   * `GET /personal_access_tokens/self`: the scopes of the personal access token sent. The
   * users' own tokens are personal access tokens here; tokens issued through OAuth are not (404).
   */
  function selfToken(req: http.IncomingMessage): Reply {
    const token = tokenFromRequest(req, new URL(req.url ?? '/', 'http://x').searchParams)
    const check = token === undefined ? undefined : checkToken(world, token)
    if (!check?.ok) throw unauthorized()
    if (check.oauth) throw routeMiss()
    return {
      status: 200,
      body: {
        id: check.user.id,
        name: 'stand-in token',
        revoked: false,
        created_at: FIXED_DATE,
        scopes: check.scopes,
        user_id: check.user.id,
        last_used_at: FIXED_DATE,
        active: true,
        expires_at: null,
      },
    }
  }

  /** Git smart HTTP through git-http-backend, with GitLab-like access control. */
  async function gitRoute(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rawPath: string,
    query: string,
  ) {
    const match = /^\/(.+?\.git)(\/.*)$/.exec(rawPath)
    const decodedRepo = match?.[1] ? decodeURIComponent(match[1]) : undefined
    const project = decodedRepo ? findProject(world, decodedRepo.slice(0, -4)) : undefined
    const rest = match?.[2] ?? ''
    if (!project) return send(res, 404, { message: 'The project you were looking for could not be found.' })
    const denied = () =>
      send(res, 401, 'HTTP Basic: Access denied', { 'www-authenticate': 'Basic realm="GitLab"' })
    const check = gitUser(world, req)
    if (check && !check.ok) return denied()
    const user = check?.ok ? check.user : null
    const scopes = check?.ok ? check.scopes : []
    if (!canReadCode(project, user)) {
      if (!user) return denied()
      return send(res, 404, 'The project you were looking for could not be found.')
    }
    const push =
      rest === '/git-receive-pack' || new URLSearchParams(query).get('service') === 'git-receive-pack'
    if (push) {
      // Pushing needs a token (git asks for one after this 401), `write_repository` or `api`,
      // and Developer access (creating and deleting unprotected branches).
      if (!user) return denied()
      if (
        !scopes.some((s) => s === 'api' || s === 'write_repository') ||
        accessLevel(project, user) < Access.developer
      ) {
        return send(res, 403, 'You are not allowed to push code to this project.')
      }
    } else if (user && !scopes.some((s) => ['api', 'read_repository', 'write_repository'].includes(s))) {
      return send(res, 403, 'You are not allowed to download code from this project.')
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: gitRoot(project),
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      PATH_INFO: `/${pathWithNamespace(project)}.git${rest}`,
      QUERY_STRING: query,
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_ADDR: '127.0.0.1',
      ...(user ? { REMOTE_USER: user.username } : {}),
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
      ...(typeof req.headers['git-protocol'] === 'string'
        ? { GIT_PROTOCOL: req.headers['git-protocol'] }
        : {}),
    }
    const child = spawn('/usr/lib/git-core/git-http-backend', [], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    req.pipe(child.stdin)
    child.stdin.on('error', () => {})
    const chunks: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => chunks.push(c))
    child.stderr.resume()
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    const out = Buffer.concat(chunks)
    let split = out.indexOf('\r\n\r\n')
    let sepLen = 4
    if (split < 0) {
      split = out.indexOf('\n\n')
      sepLen = 2
    }
    if (split < 0) return send(res, 500, { message: `git-http-backend failed (exit ${code})` })
    const headers: Record<string, string> = {}
    let status = 200
    for (const line of out.subarray(0, split).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':')
      if (colon < 0) continue
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      if (name === 'status') status = Number.parseInt(value, 10) || 500
      else headers[name] = value
    }
    const body = out.subarray(split + sepLen)
    res.writeHead(status, { ...headers, 'content-length': String(body.length) })
    res.end(body)
  }

  /**
   * Doorkeeper's token endpoint (refresh grant only) and token info, as GitLab serves them.
   * A used refresh token is dead, and so is the access token issued with it.
   */
  async function oauthRoute(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rawPath: string,
    query: string,
  ) {
    const oauthError = (status: number, error: string, description: string) =>
      send(res, status, { error, error_description: description })
    if (rawPath === '/oauth/token/info' && req.method === 'GET') {
      const token = tokenFromRequest(req, new URLSearchParams(query))
      const check = token === undefined ? undefined : checkToken(world, token)
      if (!check?.ok) {
        return oauthError(
          401,
          'invalid_token',
          check?.why === 'expired' ? 'The access token expired' : 'The access token is invalid',
        )
      }
      const oauth = check.oauth
      return send(res, 200, {
        resource_owner_id: check.user.id,
        scope: check.scopes,
        expires_in: oauth ? oauth.createdAt + oauth.expiresIn - nowSeconds() : null,
        application: { uid: oauth?.applicationUid ?? world.oauthApplications?.[0]?.uid ?? null },
        created_at: oauth?.createdAt ?? Math.floor(Date.parse(FIXED_DATE) / 1000),
      })
    }
    if (rawPath !== '/oauth/token' || req.method !== 'POST') throw routeMiss()
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    let params: URLSearchParams
    if (/json/i.test(req.headers['content-type'] ?? '')) {
      try {
        params = new URLSearchParams(JSON.parse(text) as Record<string, string>)
      } catch {
        return oauthError(400, 'invalid_request', 'The request is missing a required parameter.')
      }
    } else {
      params = new URLSearchParams(text)
    }
    const basic = basicCredentials(req)
    const clientId = params.get('client_id') ?? basic?.username
    const clientSecret = params.get('client_secret') ?? basic?.password
    const app = world.oauthApplications?.find((a) => a.uid === clientId && a.secret === clientSecret)
    if (!app) {
      return oauthError(
        401,
        'invalid_client',
        'Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.',
      )
    }
    if (params.get('grant_type') !== 'refresh_token') {
      return oauthError(
        400,
        'unsupported_grant_type',
        'The authorization grant type is not supported by the authorization server.',
      )
    }
    const refreshToken = params.get('refresh_token')
    if (!refreshToken) return oauthError(400, 'invalid_request', 'Missing required parameter: refresh_token.')
    const old = world.oauthTokens?.find((o) => o.refreshToken === refreshToken)
    if (!old || old.revoked || old.applicationUid !== app.uid) {
      return oauthError(
        400,
        'invalid_grant',
        'The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.',
      )
    }
    old.revoked = true
    const fresh = issue(old.username, { scopes: old.scopes, applicationUid: app.uid })
    return send(res, 200, {
      access_token: fresh.accessToken,
      token_type: 'Bearer',
      expires_in: fresh.expiresIn,
      refresh_token: fresh.refreshToken,
      scope: fresh.scopes.join(' '),
      created_at: fresh.createdAt,
    })
  }

  function issue(
    username: string,
    options: { scopes?: string[]; expiresIn?: number; applicationUid?: string } = {},
  ): GitLabOAuthToken {
    const token: GitLabOAuthToken = {
      accessToken: randomBytes(32).toString('hex'),
      refreshToken: randomBytes(32).toString('hex'),
      username,
      scopes: options.scopes ?? ['api'],
      applicationUid: options.applicationUid ?? world.oauthApplications?.[0]?.uid ?? '',
      createdAt: nowSeconds(),
      expiresIn: options.expiresIn ?? 7200,
    }
    world.oauthTokens ??= []
    world.oauthTokens.push(token)
    return token
  }

  function send(
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) {
    if (body === undefined) {
      // 204 No Content
      res.writeHead(status, headers)
      res.end()
      return
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    res.writeHead(status, {
      'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    })
    res.end(res.req.method === 'HEAD' ? undefined : text)
  }

  async function applyFaults(
    server: 'gitlab' | 'registry',
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rawPath: string,
  ): Promise<boolean> {
    const fault = faults.find(
      (f) =>
        (f.server === undefined || f.server === server) &&
        (f.method === undefined || f.method === req.method) &&
        f.path.test(rawPath),
    )
    if (!fault) return false
    if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs))
    if (fault.hangUp) {
      req.socket.destroy()
      return true
    }
    if (fault.status === undefined) return false
    send(res, fault.status, fault.body ?? { message: `${fault.status} Stand-in fault` })
    return true
  }

  function record(server: 'gitlab' | 'registry', req: http.IncomingMessage, res: http.ServerResponse) {
    const [path = '/', query = ''] = (req.url ?? '/').split('?', 2)
    res.on('finish', () =>
      requests.push({ server, method: req.method ?? 'GET', path, query, status: res.statusCode }),
    )
    return { path, query }
  }

  const api = http.createServer(async (req, res) => {
    const { path: rawPath, query } = record('gitlab', req, res)
    try {
      if (await applyFaults('gitlab', req, res, rawPath)) return
      if (rawPath.startsWith('/api/v4/')) {
        const params = new URLSearchParams(query)
        const actor = actorFor(world, tokenFromRequest(req, params))
        const seg = segmentsOf(rawPath.slice('/api/v4'.length))
        if (!seg) throw routeMiss()
        const reply = await apiRoute(req, seg, actor)
        return send(res, reply.status, reply.body, reply.headers)
      }
      if (rawPath === '/jwt/auth') return registryAuth(req, res, new URLSearchParams(query))
      if (rawPath === '/-/health') return send(res, 200, 'GitLab OK')
      if (rawPath === '/oauth/token' || rawPath === '/oauth/token/info') {
        return await oauthRoute(req, res, rawPath, query)
      }
      if (/^\/.+\.git\//.test(rawPath)) return await gitRoute(req, res, rawPath, query)
      throw routeMiss()
    } catch (err) {
      if (err instanceof HttpError) return send(res, err.status, err.body, err.headers)
      send(res, 500, { message: '500 Internal Server Error' })
    }
  })

  /** GitLab's registry token endpoint: grants `pull` on what the (possibly anonymous) user may read. */
  function registryAuth(req: http.IncomingMessage, res: http.ServerResponse, params: URLSearchParams) {
    const check = gitUser(world, req)
    const user = check?.ok ? check.user : null
    if (check && !check.ok) {
      return send(res, 401, {
        errors: [
          {
            code: 'UNAUTHORIZED',
            message: 'HTTP Basic: Access denied. The provided password or token is incorrect.',
          },
        ],
      })
    }
    const granted = new Set<string>()
    for (const scope of params.getAll('scope')) {
      const m = /^repository:([^:]+):([a-z,*]+)$/.exec(scope)
      if (!m?.[1] || !m[2]?.split(',').includes('pull')) continue
      const project = projectOfRepository(world, m[1].toLowerCase())
      if (project && canReadCode(project, user)) granted.add(m[1].toLowerCase())
    }
    const token = randomBytes(24).toString('base64url')
    registryTokens.set(token, granted)
    send(res, 200, { token, expires_in: 300, issued_at: new Date().toISOString() })
  }

  const registry = http.createServer(async (req, res) => {
    const { path: rawPath } = record('registry', req, res)
    const baseHeaders = { 'docker-distribution-api-version': 'registry/2.0' }
    try {
      if (await applyFaults('registry', req, res, rawPath)) return
      const auth = req.headers.authorization
      const bearer = auth && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '').trim() : undefined
      const grants = bearer ? registryTokens.get(bearer) : undefined
      const realm = `Bearer realm="${base}/jwt/auth",service="container_registry"`
      if (rawPath === '/v2/' || rawPath === '/v2') {
        if (!grants) {
          return send(
            res,
            401,
            { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] },
            { ...baseHeaders, 'www-authenticate': realm },
          )
        }
        return send(res, 200, {}, baseHeaders)
      }
      const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(rawPath)
      if (!m?.[1] || !m[2] || (req.method !== 'GET' && req.method !== 'HEAD')) {
        return send(
          res,
          404,
          { errors: [{ code: 'NOT_FOUND', message: 'not found', detail: null }] },
          baseHeaders,
        )
      }
      const name = decodeURIComponent(m[1])
      const tag = decodeURIComponent(m[2])
      const scope = `repository:${name}:pull`
      const unauthorizedBody = {
        errors: [
          {
            code: 'UNAUTHORIZED',
            message: 'authentication required',
            detail: [{ Type: 'repository', Name: name, Action: 'pull' }],
          },
        ],
      }
      if (!grants) {
        return send(res, 401, unauthorizedBody, {
          ...baseHeaders,
          'www-authenticate': `${realm},scope="${scope}"`,
        })
      }
      if (!grants.has(name)) {
        return send(res, 401, unauthorizedBody, {
          ...baseHeaders,
          'www-authenticate': `${realm},scope="${scope}",error="insufficient_scope"`,
        })
      }
      const images = world.images.map(parseImage).filter((i) => i.repository === name)
      if (images.length === 0) {
        return send(
          res,
          404,
          {
            errors: [
              { code: 'NAME_UNKNOWN', message: 'repository name not known to registry', detail: { name } },
            ],
          },
          baseHeaders,
        )
      }
      if (!images.some((i) => i.tag === tag)) {
        return send(
          res,
          404,
          { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: tag } }] },
          baseHeaders,
        )
      }
      const manifest = manifestFor(name, tag)
      const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`
      res.writeHead(200, {
        ...baseHeaders,
        'content-type': MANIFEST_TYPE,
        'content-length': String(Buffer.byteLength(manifest)),
        'docker-content-digest': digest,
        etag: `"${digest}"`,
      })
      res.end(req.method === 'HEAD' ? undefined : manifest)
    } catch {
      send(res, 500, { errors: [{ code: 'UNKNOWN', message: 'unknown error', detail: null }] }, baseHeaders)
    }
  })

  const listen = (server: http.Server) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
    })
  const apiPort = await listen(api)
  const registryPort = await listen(registry)
  base = `http://127.0.0.1:${apiPort}`
  registryHost = `127.0.0.1:${registryPort}`

  const closeServer = (server: http.Server) =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })

  return {
    url: base,
    registryHost,
    requests,
    faults,
    issueToken: issue,
    expireToken(token) {
      world.expiredTokens ??= []
      world.expiredTokens.push(token)
    },
    async close() {
      await Promise.all([closeServer(api), closeServer(registry)])
    },
  }
}
