import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { LRUCache } from 'lru-cache'
import { ApiError } from '../lib/errors.js'
import type { HubIdentity } from '../lib/jupyterhub.js'
import { prefersHtml, SESSION_COOKIE } from '../lib/session.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The caller, once `authenticate` has run. */
    user: HubIdentity | null
  }
  interface FastifyInstance {
    /** An onRequest hook that admits only callers the hub knows; sets `request.user`. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

export interface HubAuthOptions {
  /** How long the hub's answer about a token is trusted. */
  ttlMs?: number
  maxEntries?: number
}

const tokenHeader = /^(?:token|bearer)\s+(\S+)\s*$/i

/** The token of an `Authorization: token <t>` or `Bearer <t>` header. */
export function tokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  return header ? tokenHeader.exec(header)?.[1] : undefined
}

/**
 * Identifies callers by their JupyterHub token (the header first, else the one in the login
 * session cookie), asking the hub and remembering its answer briefly. Tokens are kept only
 * as hashes.
 * @see {@link https://jupyterhub.readthedocs.io/en/stable/reference/services.html}
 */
export default fp<HubAuthOptions>(
  async (fastify, options) => {
    const ttl = Math.min(options.ttlMs ?? 30_000, 60_000)
    // `false` remembers a refused token for a moment, so a flood of bad tokens cannot load the hub.
    const identities = new LRUCache<string, HubIdentity | false>({ max: options.maxEntries ?? 10_000, ttl })
    const refusedTtl = Math.min(ttl, 5_000)

    // Hub calls under way, by token hash: concurrent first uses of a token share one `GET /user`.
    const asking = new Map<string, Promise<HubIdentity | null>>()

    function identify(token: string): Promise<HubIdentity | null> {
      const key = createHash('sha256').update(token).digest('base64')
      const known = identities.get(key)
      if (known !== undefined) return Promise.resolve(known || null)
      const inFlight = asking.get(key)
      if (inFlight) return inFlight
      const ask = fastify.jupyterhub
        .whoami(token)
        .then((identity) => {
          if (identity) identities.set(key, identity)
          else identities.set(key, false, { ttl: refusedTtl })
          return identity
        })
        .finally(() => asking.delete(key))
      asking.set(key, ask)
      return ask
    }

    // The login session cookie (routes/auth.ts); its hub token goes through the same check.
    const { sessions } = fastify.hubLogin
    const loginPath = `${fastify.config.servicePrefix}login`

    async function identifyCaller(request: FastifyRequest): Promise<HubIdentity | null> {
      const token = tokenOf(request)
      if (token) return identify(token)
      const session = sessions.open(request.cookies?.[SESSION_COOKIE])
      const identity = session ? await identify(session.token) : null
      return identity && identity.name === session?.user ? identity : null
    }

    fastify.decorateRequest('user', null)
    fastify.decorate('authenticate', async (request: FastifyRequest, reply: FastifyReply) => {
      const identity = await identifyCaller(request)
      if (!identity) {
        // A browser navigating here logs in and comes back; scripts get the 401.
        if ((request.method === 'GET' || request.method === 'HEAD') && prefersHtml(request.headers.accept)) {
          await reply.redirect(`${loginPath}?next=${encodeURIComponent(request.url)}`, 302)
          return
        }
        throw new ApiError(401, 'NOT_AUTHENTICATED', 'A valid JupyterHub token or login is needed.')
      }
      if (identity.kind !== 'user') {
        throw new ApiError(403, 'USERS_ONLY', 'Only JupyterHub users can have notebook servers.')
      }
      request.user = identity
    })
  },
  { name: 'hub-auth', dependencies: ['jupyterhub', 'oauth'] },
)
