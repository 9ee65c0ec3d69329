/** GitLab's REST API v4: the parts the service uses, with GitLab's shapes and errors. */
import { createHash } from 'node:crypto'
import type http from 'node:http'
import { type Actor, checkToken, requireScope, tokenFromRequest } from './auth.js'
import { FIXED_DATE, forbidden, HttpError, notFound, type Reply, routeMiss, unauthorized } from './http.js'
import { manifestFor, registryRepositories } from './registry.js'
import { commitJson, git, resolveCommit } from './repository.js'
import {
  Access,
  accessLevel,
  canReadCode,
  canSee,
  findProject,
  type GitLabProject,
  pathWithNamespace,
  type StandInContext,
} from './world.js'

function projectJson(ctx: StandInContext, p: GitLabProject, actor: Actor) {
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
    http_url_to_repo: `${ctx.base}/${pwn}.git`,
    web_url: `${ctx.base}/${pwn}`,
    readme_url: `${ctx.base}/${pwn}/-/blob/${p.defaultBranch}/README.md`,
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
      web_url: `${ctx.base}/groups/${p.namespace.fullPath}`,
    },
    container_registry_image_prefix: `${ctx.registryHost}/${pwn.toLowerCase()}`,
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

function visibleProject(ctx: StandInContext, id: string, actor: Actor): GitLabProject {
  const p = findProject(ctx.world, id)
  if (!p || !canSee(p, actor.user)) throw notFound('Project')
  return p
}

export async function apiRoute(
  ctx: StandInContext,
  req: http.IncomingMessage,
  seg: string[],
  actor: Actor,
): Promise<Reply> {
  const method = req.method === 'HEAD' ? 'GET' : req.method
  if (method === 'DELETE') return deleteRoute(ctx, seg, actor)
  if (method !== 'GET') throw routeMiss()
  const [a, b, c, d, e, f, g] = seg
  if (a === 'personal_access_tokens' && b === 'self' && seg.length === 2) return selfToken(ctx, req)
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
        web_url: `${ctx.base}/${u.username}`,
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
  if (seg.length === 2) return { status: 200, body: projectJson(ctx, visibleProject(ctx, b, actor), actor) }

  if (c === 'repository' && (d === 'commits' || d === 'branches') && e !== undefined && seg.length === 5) {
    const p = visibleProject(ctx, b, actor)
    if (!canReadCode(p, actor.user)) throw forbidden()
    if (d === 'commits') {
      const sha = await resolveCommit(p, e)
      if (!sha) throw notFound('Commit')
      return { status: 200, body: await commitJson(ctx.base, p, sha) }
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
    return { status: 200, body: await branchJson(ctx, p, actor, e, sha) }
  }

  if (c === 'repository' && d === 'branches' && seg.length === 4) {
    const p = visibleProject(ctx, b, actor)
    if (!canReadCode(p, actor.user)) throw forbidden()
    return listBranches(ctx, req, p, actor)
  }

  if (c === 'registry' && d === 'repositories') {
    const p = visibleProject(ctx, b, actor)
    if (!canReadCode(p, actor.user)) throw forbidden()
    const repos = registryRepositories(ctx.world, p)
    const query = new URL(req.url ?? '/', 'http://x').searchParams
    const repoJson = (r: (typeof repos)[number]) => ({
      id: r.id,
      name: r.name,
      path: r.path,
      project_id: p.id,
      location: `${ctx.registryHost}/${r.path}`,
      created_at: FIXED_DATE,
      cleanup_policy_started_at: null,
      ...(query.get('tags_count') === 'true' ? { tags_count: r.tags.length } : {}),
      ...(query.get('tags') === 'true'
        ? {
            tags: r.tags.map((t) => ({
              name: t,
              path: `${r.path}:${t}`,
              location: `${ctx.registryHost}/${r.path}:${t}`,
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
      location: `${ctx.registryHost}/${repo.path}:${t}`,
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
async function branchJson(ctx: StandInContext, p: GitLabProject, actor: Actor, name: string, sha: string) {
  return {
    name,
    commit: await commitJson(ctx.base, p, sha),
    merged: false,
    protected: name === p.defaultBranch,
    default: name === p.defaultBranch,
    developers_can_push: false,
    developers_can_merge: false,
    can_push: accessLevel(p, actor.user) >= (name === p.defaultBranch ? Access.maintainer : Access.developer),
    web_url: `${ctx.base}/${pathWithNamespace(p)}/-/tree/${name}`,
  }
}

/**
 * `GET /projects/:id/repository/branches`: by name; `search` matches anywhere, `^term` at the
 * start, `term$` at the end (case-insensitively, as GitLab's BranchesFinder); offset pagination.
 */
async function listBranches(
  ctx: StandInContext,
  req: http.IncomingMessage,
  p: GitLabProject,
  actor: Actor,
): Promise<Reply> {
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
    body: await Promise.all(slice.map(({ name, sha }) => branchJson(ctx, p, actor, name, sha))),
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
async function deleteRoute(ctx: StandInContext, seg: string[], actor: Actor): Promise<Reply> {
  const [a, b, c, d, e] = seg
  if (a !== 'projects' || !b || c !== 'repository' || d !== 'branches' || !e || seg.length !== 5) {
    throw routeMiss()
  }
  if (!actor.user) throw unauthorized()
  requireScope(actor, 'api')
  const p = visibleProject(ctx, b, actor)
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
function selfToken(ctx: StandInContext, req: http.IncomingMessage): Reply {
  const token = tokenFromRequest(req, new URL(req.url ?? '/', 'http://x').searchParams)
  const check = token === undefined ? undefined : checkToken(ctx.world, token)
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
