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
  /**
   * How long the hub's answer about a token is trusted, counted from the question: 1 to
   * 300 000 ms (5 minutes, JupyterHub's own `HubAuth` default, is also the most).
   */
  ttlMs?: number
  /** How long a refusal is remembered: 1 ms up to `ttlMs` (the default). */
  refusedTtlMs?: number
  /** How many tokens' answers are kept at most; default 10 000. */
  maxEntries?: number
}

/** JupyterHub's `HubAuth.cache_max_age`: the longest a token's answer may be trusted. */
export const TOKEN_TTL_MAX_MS = 5 * 60_000

/** Refuses options the plugin cannot honour, naming the option, as `@fastify/oauth2` does. */
export function checkHubAuthOptions(options: Record<string, unknown>): Required<HubAuthOptions> {
  const known = new Set(['ttlMs', 'refusedTtlMs', 'maxEntries'])
  for (const name of Object.keys(options)) {
    if (!known.has(name))
      throw new Error(`hub-auth: options.${name} is not an option (${[...known].join(', ')})`)
  }
  const whole = (name: string, value: unknown, max: number): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
      throw new Error(
        `hub-auth: options.${name} must be a whole number from 1 to ${max}, not ${String(value)}`,
      )
    }
    return value
  }
  const ttlMs = whole('ttlMs', options.ttlMs ?? TOKEN_TTL_MAX_MS, TOKEN_TTL_MAX_MS)
  return {
    ttlMs,
    refusedTtlMs: whole('refusedTtlMs', options.refusedTtlMs ?? ttlMs, ttlMs),
    maxEntries: whole('maxEntries', options.maxEntries ?? 10_000, 10_000_000),
  }
}

/** The hub's answer about one token (null: refused). */
interface Checked {
  identity: HubIdentity | null
}

const tokenHeader = /^(?:token|bearer)\s+(\S+)\s*$/i

/** The token of an `Authorization: token <t>` or `Bearer <t>` header. */
export function tokenOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  return header ? tokenHeader.exec(header)?.[1] : undefined
}

/**
 * Identifies callers by their JupyterHub token (the header first, else the login session
 * cookie), asking the hub at most once per token per `ttlMs` (5 minutes, as JupyterHub's own
 * `HubAuth` does; README "Configuration"): concurrent first uses share that one `GET /user`, and
 * a token the hub refuses stops working at once on this replica, for the cookie too. The
 * cookie is verified by the service alone: it carries the identity the hub gave at login, sealed
 * with its expiry, so a request with it makes no hub call. Tokens are kept only as hashes.
 * @see {@link https://jupyterhub.readthedocs.io/en/stable/reference/services.html}
 */
export default fp<HubAuthOptions>(
  async (fastify, options) => {
    const { ttlMs, refusedTtlMs, maxEntries } = checkHubAuthOptions(options as Record<string, unknown>)

    // Keyed by the token's hash; the token itself is only the context of a call under way.
    // A call under way sits in the cache, so concurrent first uses of a token share one
    // `GET /user`. An answer lives until its limit (the LRU's TTL), and is not re-checked before.
    const identities = new LRUCache<string, Checked, string>({
      max: maxEntries,
      ttl: ttlMs,
      fetchMethod: async (_key, _stale, { options: entry, context: token }) => {
        const askedAt = performance.now()
        const identity = await fastify.jupyterhub.whoami(token)
        // Trusted from when the hub was asked, not from when it answered.
        const spent = performance.now() - askedAt
        entry.ttl = Math.max(1, (identity ? ttlMs : refusedTtlMs) - spent)
        return { identity }
      },
      // A call whose entry was pushed out still answers the requests waiting for it.
      ignoreFetchAbort: true,
    })
    const keyOf = (token: string) => createHash('sha256').update(token).digest('base64')

    async function identify(token: string): Promise<HubIdentity | null> {
      const checked = await identities.fetch(keyOf(token), { context: token })
      return checked?.identity ?? null
    }

    // The login session cookie (routes/auth.ts); its hub token goes through the same check.
    const { sessions } = fastify.hubLogin
    const loginPath = `${fastify.config.servicePrefix}login`

    async function identifyCaller(request: FastifyRequest): Promise<HubIdentity | null> {
      const token = tokenOf(request)
      if (token) return identify(token)
      const session = sessions.open(request.cookies?.[SESSION_COOKIE])
      if (!session) return null
      const key = keyOf(session.token)
      // Refused by the hub on this replica (e.g. revoked, seen in a header): refused here too.
      if (identities.get(key, { allowStale: false })?.identity === null) return null
      if (session.identity) return session.identity
      // A cookie sealed before it carried the identity: its token is checked like a header's.
      const identity = await identify(session.token)
      return identity && identity.name === session.user ? identity : null
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
