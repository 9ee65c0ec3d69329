import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { prefersHtml, SESSION_COOKIE, SESSION_MAX_AGE_S, safeNext } from '../lib/auth/session.js'
import { ApiError, UpstreamError } from '../lib/core/errors.js'
import { errors } from '../schemas/common.js'

const NextQuery = Type.Object({
  next: Type.Optional(
    Type.String({
      maxLength: 2048,
      description: 'A path on this service to return to afterwards, e.g. `/services/notebooks/servers`.',
    }),
  ),
})

const CallbackQuery = Type.Object({
  code: Type.Optional(Type.String({ maxLength: 1024, description: 'The code the hub issued.' })),
  state: Type.Optional(Type.String({ maxLength: 4096, description: 'The state `login` sent.' })),
  error: Type.Optional(Type.String({ maxLength: 256, description: 'Set by the hub when it refused.' })),
})

const redirect = (description: string) => ({
  type: 'null',
  description,
  headers: { location: { type: 'string', description: 'Where the browser goes next.' } },
})

const badNext = () =>
  new ApiError(400, 'INVALID_NEXT', '`next` must be a path on this service (under its prefix).')

/** Login through the hub (OAuth code flow), its callback, and logout. No authentication needed. */
const authRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { hubLogin, config } = fastify

  function target(next: string | undefined): string | undefined {
    if (next === undefined) return undefined
    const safe = safeNext(next, config.servicePrefix)
    if (!safe) throw badNext()
    return safe
  }

  fastify.get(
    '/login',
    {
      schema: {
        operationId: 'login',
        summary: 'Log in through JupyterHub',
        description:
          "Redirects to the hub's OAuth authorize page with a fresh `state`; the hub sends the browser back to " +
          '`oauth_callback`, which sets the session cookie and returns to `next` (by default the API docs).',
        tags: ['auth'],
        security: [],
        querystring: NextQuery,
        response: {
          302: redirect("To the hub's OAuth authorize page."),
          ...errors('INVALID_NEXT', 'VALIDATION_ERROR'),
        },
      },
    },
    async (request, reply) => {
      target(request.query.next)
      return reply.redirect(await hubLogin.authorizeUrl(request, reply), 302)
    },
  )

  fastify.get(
    '/oauth_callback',
    {
      // Its URL holds the one-time code: no request logs for it below warnings.
      logLevel: 'warn',
      schema: {
        operationId: 'oauthCallback',
        summary: 'Finish logging in through JupyterHub',
        description:
          'Where the hub sends the browser back with a code. Checks `state` against the cookie `login` set, ' +
          'exchanges the code for a hub token, identifies the user and sets the session cookie ' +
          '(`notebooks-session`: HttpOnly, SameSite=Lax, Secure over HTTPS, encrypted), then redirects to `next`.',
        tags: ['auth'],
        security: [],
        querystring: CallbackQuery,
        response: {
          302: redirect('Logged in: back to where the login started.'),
          ...errors(
            'VALIDATION_ERROR',
            'OAUTH_CALLBACK_INVALID',
            'OAUTH_STATE_INVALID',
            'OAUTH_CODE_INVALID',
            'OAUTH_DENIED',
            'USERS_ONLY',
            'UPSTREAM_BAD_RESPONSE',
            'UPSTREAM_UNAVAILABLE',
            'UPSTREAM_TIMEOUT',
          ),
        },
      },
    },
    async (request, reply) => {
      const { code, state, error } = request.query
      if (error) {
        throw new ApiError(403, 'OAUTH_DENIED', 'JupyterHub did not allow the login.')
      }
      if (!code || !state) {
        throw new ApiError(
          400,
          'OAUTH_CALLBACK_INVALID',
          'The login callback lacks its code or state; log in again.',
        )
      }
      const { token, expiresIn, next } = await hubLogin.exchange(request, reply)
      const identity = await fastify.jupyterhub.whoami(token)
      if (!identity) {
        throw new UpstreamError('JupyterHub', 'bad_response', 'the token the hub just issued is not accepted')
      }
      if (identity.kind !== 'user') {
        throw new ApiError(403, 'USERS_ONLY', 'Only JupyterHub users can have notebook servers.')
      }
      const maxAge = Math.min(SESSION_MAX_AGE_S, expiresIn ?? SESSION_MAX_AGE_S)
      const value = hubLogin.sessions.seal({
        token,
        user: identity.name,
        expiresAt: Date.now() + maxAge * 1000,
        identity,
      })
      request.log.info({ user: identity.name }, 'login')
      reply.setCookie(SESSION_COOKIE, value, { ...hubLogin.cookieOptions, maxAge })
      return reply.redirect(next, 302)
    },
  )

  fastify.get(
    '/logout',
    {
      schema: {
        operationId: 'logout',
        summary: 'Log out of this service',
        description:
          'Clears the session cookie. Then redirects to `next` when given; a browser without `next` goes on to ' +
          "the hub's logout page (so it is not logged straight back in); other callers get 204.",
        tags: ['auth'],
        security: [],
        querystring: NextQuery,
        response: {
          204: { type: 'null', description: 'Logged out.' },
          302: redirect('Logged out: to `next`, or to the hub’s logout page.'),
          ...errors('INVALID_NEXT', 'VALIDATION_ERROR'),
        },
      },
    },
    async (request, reply) => {
      const next = target(request.query.next)
      reply.clearCookie(SESSION_COOKIE, hubLogin.cookieOptions)
      if (next) return reply.redirect(next, 302)
      if (prefersHtml(request.headers.accept)) {
        return reply.redirect(`${config.hubOrigin}${config.hubBaseUrl}hub/logout`, 302)
      }
      return reply.code(204).send()
    },
  )
}

export default authRoutes
