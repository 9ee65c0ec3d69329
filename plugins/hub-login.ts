import { randomBytes, timingSafeEqual } from 'node:crypto'
import cookie, { type CookieSerializeOptions } from '@fastify/cookie'
import oauth2, { type OAuth2Namespace, type OAuth2Token } from '@fastify/oauth2'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { SessionSealer, STATE_COOKIE, safeNext } from '../lib/auth/session.js'
import { ApiError, UpstreamError } from '../lib/core/errors.js'
import { errorOutcome, type UpstreamOutcome } from '../lib/core/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The OAuth code flow against the hub's OAuth provider. */
    hubLogin: HubLogin
  }
}

export interface HubLogin {
  sessions: SessionSealer
  /** Attributes of the session cookie (and of clearing it). */
  cookieOptions: CookieSerializeOptions
  /** Where `login` goes when no `next` is given. */
  defaultNext: string
  /** The hub's authorize URL with a fresh `state` (also set as a cookie) that carries `next`. */
  authorizeUrl(request: FastifyRequest, reply: FastifyReply): Promise<string>
  /** Checks `state`, exchanges the code; the hub's access token and where to go next. */
  exchange(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<{ token: string; expiresIn?: number; next: string }>
}

// Only used to build the authorize URL when it is meant to be relative (see below).
const PLACEHOLDER_ORIGIN = 'http://hub.invalid'

function nextOf(state: string, fallback: string, prefix: string): string {
  const encoded = state.split('.')[1] ?? ''
  const next = Buffer.from(encoded, 'base64url').toString('utf8')
  return (next && safeNext(next, prefix)) || fallback
}

interface BoomLike {
  isBoom?: boolean
  output?: { statusCode?: number }
  data?: { isResponseError?: boolean; payload?: unknown }
}

/** The hub's refusal of a code (400 invalid_grant…) is the caller's problem; the rest is the hub's. */
function tokenError(err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const boom = err as BoomLike
  const status = boom.output?.statusCode ?? 0
  if (boom.data?.isResponseError) {
    if (status >= 400 && status < 500) {
      return new ApiError(
        400,
        'OAUTH_CODE_INVALID',
        'JupyterHub did not accept the login code (it may have been used already); log in again.',
      )
    }
    return new UpstreamError('JupyterHub', 'bad_response', `token endpoint answered ${status}`)
  }
  if (status === 504) return new UpstreamError('JupyterHub', 'timeout', 'token endpoint timed out')
  return new UpstreamError('JupyterHub', 'unavailable', `token endpoint: ${(err as Error)?.message}`)
}

/**
 * Login through the hub: `@fastify/oauth2` against the hub's OAuth provider, the service being
 * the confidential client `JUPYTERHUB_CLIENT_ID` whose secret is its API token.
 *
 * The browser is sent to `{JUPYTERHUB_ORIGIN}{JUPYTERHUB_BASE_URL}hub/api/oauth2/authorize`,
 * as JupyterHub's own services do: the hub's public address, not `JUPYTERHUB_API_URL`, which
 * is usually an internal one. Without `JUPYTERHUB_ORIGIN` that URL is relative, which is right
 * since the service is reached through the hub's proxy. The code is exchanged server to server
 * at `{JUPYTERHUB_API_URL}/oauth2/token`.
 * @see {@link https://jupyterhub.readthedocs.io/en/stable/reference/services.html#hub-authentication-and-services}
 */
export default fp(
  async (fastify) => {
    const { config } = fastify
    const prefix = config.servicePrefix
    const api = new URL(config.hubApiUrl)
    const authorizeHost = config.hubOrigin || PLACEHOLDER_ORIGIN
    const defaultNext = `${prefix}docs`

    await fastify.register(cookie)
    await fastify.register(oauth2, {
      name: 'hubOAuth',
      credentials: {
        client: { id: config.oauthClientId, secret: config.hubApiToken },
        auth: {
          authorizeHost,
          authorizePath: `${config.hubBaseUrl}hub/api/oauth2/authorize`,
          tokenHost: api.origin,
          tokenPath: `${api.pathname.replace(/\/$/, '')}/oauth2/token`,
        },
        // The hub reads the client's credentials from the form body.
        options: { authorizationMethod: 'body' },
        http: { timeout: config.upstreamTimeoutMs },
      },
      callbackUri: config.oauthCallbackUrl,
      redirectStateCookieName: STATE_COOKIE,
      cookie: { path: prefix, httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: 600 },
      // The state is random, and carries where to go after the callback; the same value
      // sits in an HttpOnly cookie, so only the browser that started the login can finish it.
      generateStateFunction: (request: FastifyRequest) => {
        const { next } = request.query as { next?: string }
        const target = (next && safeNext(next, prefix)) || defaultNext
        return `${randomBytes(18).toString('base64url')}.${Buffer.from(target).toString('base64url')}`
      },
      checkStateFunction: (request: FastifyRequest) => {
        const { state } = request.query as { state?: string }
        const expected = request.cookies[STATE_COOKIE]
        const ok =
          typeof state === 'string' &&
          typeof expected === 'string' &&
          state.length === expected.length &&
          timingSafeEqual(Buffer.from(state), Buffer.from(expected))
        if (!ok) {
          throw new ApiError(
            400,
            'OAUTH_STATE_INVALID',
            'The login could not be matched to one this browser started (it may be used already or expired); log in again.',
          )
        }
        return true
      },
    })
    const hubOAuth = (fastify as unknown as { hubOAuth: OAuth2Namespace }).hubOAuth

    const login: HubLogin = {
      sessions: new SessionSealer(config.hubApiToken),
      cookieOptions: { path: prefix, httpOnly: true, sameSite: 'lax', secure: 'auto' },
      defaultNext,
      async authorizeUrl(request, reply) {
        const url = new URL(await hubOAuth.generateAuthorizationUri(request, reply))
        // No scopes are asked for (the hub grants its identity scopes); the library would send `undefined`.
        url.searchParams.delete('scope')
        return config.hubOrigin ? url.toString() : url.pathname + url.search
      },
      async exchange(request, reply) {
        let result: OAuth2Token
        const started = performance.now()
        // Undefined when the hub was not asked (a state that does not match is refused before).
        let outcome: UpstreamOutcome | undefined = 'ok'
        try {
          // With the reply, the state cookie is cleared: a state is good for one callback.
          result = await hubOAuth.getAccessTokenFromAuthorizationCodeFlow(request, reply)
        } catch (err) {
          const error = tokenError(err)
          outcome =
            err instanceof ApiError ? undefined : error instanceof UpstreamError ? errorOutcome(error) : '4xx'
          throw error
        } finally {
          if (outcome)
            fastify.metrics.observeUpstream({
              upstream: 'JupyterHub',
              operation: 'POST /oauth2/token',
              outcome,
              seconds: (performance.now() - started) / 1000,
            })
        }
        const token = result.token.access_token
        if (typeof token !== 'string' || !token) {
          throw new UpstreamError('JupyterHub', 'bad_response', 'token endpoint answered without a token')
        }
        const { state } = request.query as { state: string }
        const expiresIn = Number(result.token.expires_in)
        return {
          token,
          expiresIn: Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : undefined,
          next: nextOf(state, defaultNext, prefix),
        }
      },
    }
    fastify.decorate('hubLogin', login)
  },
  { name: 'hub-login', dependencies: ['config', 'metrics'] },
)
