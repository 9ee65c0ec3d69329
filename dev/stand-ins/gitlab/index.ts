/**
 * A GitLab stand-in for tests: the parts of REST API v4 the service uses (`rest.ts`), OAuth
 * (`oauth.ts`), git smart HTTP served by git's own `git-http-backend` from real bare
 * repositories (`git-http.ts`), and a second listener speaking the Docker Registry HTTP API v2
 * with GitLab's token flow (`registry.ts`).
 *
 * Shapes and error bodies follow GitLab's docs and source; see
 * the GitLab section of the project's API notes.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { actorFor, tokenFromRequest } from './auth.js'
import { gitRoute } from './git-http.js'
import { HttpError, routeMiss, segmentsOf, send } from './http.js'
import { lfsRoute, writeHooks } from './lfs.js'
import { issueToken, oauthRoute } from './oauth.js'
import { registryAuth, registryRoute } from './registry.js'
import { apiRoute } from './rest.js'
import type { GitLabFault, GitLabStandIn, GitLabWorld, RecordedRequest, StandInContext } from './world.js'

export { LFS_MISSING_MESSAGE, lfsObjectPath, lfsPointer, readLfsObject, storeLfsObject } from './lfs.js'
export {
  Access,
  type AccessLevel,
  type GitLabFault,
  type GitLabMembership,
  type GitLabNamespace,
  type GitLabOAuthApplication,
  type GitLabOAuthToken,
  type GitLabProject,
  type GitLabStandIn,
  type GitLabUser,
  type GitLabWorld,
  type RecordedRequest,
} from './world.js'

export interface GitLabStandInOptions {
  /**
   * The host name in the URLs the stand-in gives out, and the address it listens on (default
   * `127.0.0.1` for both). See `loopbackAlias` in dev/ports.ts for why another name helps.
   */
  host?: string
  address?: string
}

/** Starts the stand-in on two random 127.0.0.1 ports. */
export async function startGitLab(
  world: GitLabWorld,
  options: GitLabStandInOptions = {},
): Promise<GitLabStandIn> {
  const host = options.host ?? '127.0.0.1'
  const requests: RecordedRequest[] = []
  const faults: GitLabFault[] = []
  const hooksDir = await mkdtemp(path.join(tmpdir(), 'gitlab-hooks-'))
  await writeHooks(hooksDir)
  const ctx: StandInContext = { world, base: '', registryHost: '', registryTokens: new Map(), hooksDir }

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
      requests.push({
        server,
        method: req.method ?? 'GET',
        path,
        query,
        status: res.statusCode,
        credentials: Boolean(req.headers.authorization || req.headers['private-token']),
      }),
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
        const reply = await apiRoute(ctx, req, seg, actor)
        return send(res, reply.status, reply.body, reply.headers)
      }
      if (rawPath === '/jwt/auth') return registryAuth(ctx, req, res, new URLSearchParams(query))
      if (rawPath === '/-/health') return send(res, 200, 'GitLab OK')
      if (rawPath === '/oauth/token' || rawPath === '/oauth/token/info') {
        return await oauthRoute(world, req, res, rawPath, query)
      }
      if (/^\/.+?\.git\/(?:info\/lfs|gitlab-lfs)\//.test(rawPath))
        return await lfsRoute(ctx, req, res, rawPath)
      if (/^\/.+\.git\//.test(rawPath)) return await gitRoute(ctx, req, res, rawPath, query)
      throw routeMiss()
    } catch (err) {
      if (err instanceof HttpError) return send(res, err.status, err.body, err.headers)
      send(res, 500, { message: '500 Internal Server Error' })
    }
  })

  const registry = http.createServer(async (req, res) => {
    const { path: rawPath } = record('registry', req, res)
    if (await applyFaults('registry', req, res, rawPath)) return
    await registryRoute(ctx, req, res, rawPath)
  })

  const listen = (server: http.Server) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, options.address ?? '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
    })
  const apiPort = await listen(api)
  const registryPort = await listen(registry)
  ctx.base = `http://${host}:${apiPort}`
  ctx.registryHost = `${options.address ?? '127.0.0.1'}:${registryPort}`

  const closeServer = (server: http.Server) =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })

  return {
    url: ctx.base,
    registryHost: ctx.registryHost,
    requests,
    faults,
    issueToken: (username, options) => issueToken(world, username, options),
    expireToken(token) {
      world.expiredTokens ??= []
      world.expiredTokens.push(token)
    },
    async close() {
      await Promise.all([closeServer(api), closeServer(registry)])
      await rm(hooksDir, { recursive: true, force: true })
    },
  }
}
