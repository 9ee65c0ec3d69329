import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { LRUCache } from 'lru-cache'
import { prefersHtml, SESSION_COOKIE } from '../lib/auth/session.js'
import { ApiError } from '../lib/core/errors.js'
import type { HubIdentity } from '../lib/hub/client.js'

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
  /** How long the hub's answer about a token is trusted at most, counted from the question (≤ 60 s). */
  ttlMs?: number
  /** From this age a known token is re-checked in the background while its answer is still used. */
  refreshAfterMs?: number
  /** How long a refusal is remembered (at most `ttlMs`). */
  refusedTtlMs?: number
  maxEntries?: number
}

/** The hub's answer about one token (null: refused) and when it was asked. */
interface Checked {
  identity: HubIdentity | null
  askedAt: number
}

const tokenHeader = /^(?:token|bearer)\s+(\S+)\s*$/i

/** The token of an `Authorization: token <t>` or `Bearer <t>` header. */
export function tokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  return header ? tokenHeader.exec(header)?.[1] : undefined
}

/**
 * Identifies callers by their JupyterHub token (the header first, else the one in the login
 * session cookie), asking the hub and remembering its answer briefly (SPEC 3): at most 60 s,
 * re-checked in the background from half of that, so that a token in use never waits on the
 * hub after its first check. Tokens are kept only as hashes.
 * @see {@link https://jupyterhub.readthedocs.io/en/stable/reference/services.html}
 */
export default fp<HubAuthOptions>(
  async (fastify, options) => {
    const ttl = Math.min(options.ttlMs ?? 60_000, 60_000)
    const refreshAfter = Math.min(options.refreshAfterMs ?? ttl / 2, ttl)
    // Refusals are remembered for a moment, so a flood of bad tokens cannot load the hub.
    const refusedTtl = Math.min(options.refusedTtlMs ?? 5_000, ttl)

    // Keyed by the token's hash; the token itself is only the context of a call under way.
    // An entry lives until its hard limit (the LRU's TTL). A call under way sits in the cache,
    // so concurrent first uses of a token share one `GET /user`, as do the requests that find a
    // re-check under way.
    const identities = new LRUCache<string, Checked, string>({
      max: options.maxEntries ?? 10_000,
      ttl,
      fetchMethod: async (_key, _stale, { options: entry, context: token }) => {
        const askedAt = performance.now()
        const identity = await fastify.jupyterhub.whoami(token)
        // Trusted from when the hub was asked, not from when it answered.
        const spent = performance.now() - askedAt
        entry.ttl = Math.max(1, (identity ? ttl : refusedTtl) - spent)
        return { identity, askedAt }
      },
      // A failed re-check keeps the earlier answer until its hard limit; a failed first check
      // leaves nothing behind.
      noDeleteOnFetchRejection: true,
      // A call whose entry was pushed out still answers the requests waiting for it.
      ignoreFetchAbort: true,
    })

    async function identify(token: string): Promise<HubIdentity | null> {
      const key = createHash('sha256').update(token).digest('base64')
      // Within its hard limit (a refused token's is short), or undefined.
      const known = identities.get(key)
      if (known?.identity && performance.now() - known.askedAt >= refreshAfter) {
        // Answered now; the hub is asked again meanwhile, so a revoked token stops working
        // within the hard limit without requests waiting on the hub.
        identities.fetch(key, { context: token, forceRefresh: true }).catch((err: unknown) => {
          fastify.log.debug(
            { upstream: 'JupyterHub', reason: (err as Error).message },
            'token re-check failed; the earlier answer stands until its limit',
          )
        })
        return known.identity
      }
      if (known) return known.identity
      const checked = await identities.fetch(key, { context: token })
      return checked?.identity ?? null
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
  { name: 'hub-auth', dependencies: ['jupyterhub', 'hub-login'] },
)
