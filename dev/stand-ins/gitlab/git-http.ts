/** Git smart HTTP, served by git's own `git-http-backend` from the real bare repositories. */
import { spawn } from 'node:child_process'
import type http from 'node:http'
import { gitUser } from './auth.js'
import { send } from './http.js'
import {
  Access,
  accessLevel,
  canReadCode,
  findProject,
  gitRoot,
  pathWithNamespace,
  type StandInContext,
} from './world.js'

/** Git smart HTTP through git-http-backend, with GitLab-like access control. */
export async function gitRoute(
  ctx: StandInContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  rawPath: string,
  query: string,
) {
  const match = /^\/(.+?\.git)(\/.*)$/.exec(rawPath)
  const decodedRepo = match?.[1] ? decodeURIComponent(match[1]) : undefined
  const project = decodedRepo ? findProject(ctx.world, decodedRepo.slice(0, -4)) : undefined
  const rest = match?.[2] ?? ''
  if (!project) return send(res, 404, { message: 'The project you were looking for could not be found.' })
  const denied = () =>
    send(res, 401, 'HTTP Basic: Access denied', { 'www-authenticate': 'Basic realm="GitLab"' })
  const check = gitUser(ctx.world, req)
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
    // GitLab's pre-receive checks, without touching the fixture repositories' own hooks.
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'core.hooksPath',
    GIT_CONFIG_VALUE_0: ctx.hooksDir,
    PATH_INFO: `/${pathWithNamespace(project)}.git${rest}`,
    QUERY_STRING: query,
    REQUEST_METHOD: req.method ?? 'GET',
    CONTENT_TYPE: req.headers['content-type'] ?? '',
    REMOTE_ADDR: '127.0.0.1',
    ...(user ? { REMOTE_USER: user.username } : {}),
    ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
    ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
    ...(typeof req.headers['git-protocol'] === 'string' ? { GIT_PROTOCOL: req.headers['git-protocol'] } : {}),
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
