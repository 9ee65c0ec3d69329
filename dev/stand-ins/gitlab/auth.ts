/** Who a request is: tokens (personal, OAuth, revoked, expired) and GitLab's 401/403 for them. */
import type http from 'node:http'
import { HttpError, unauthorized } from './http.js'
import type { GitLabOAuthToken, GitLabUser, GitLabWorld } from './world.js'

export interface Actor {
  user: GitLabUser | null
  /** The token's scopes; empty when anonymous. */
  scopes: string[]
}

const REVOKED = 'Token was revoked. You have to re-authorize from the user.'
const EXPIRED = 'Token is expired. You can either do re-authorization or token refresh.'

export function tokenFromRequest(req: http.IncomingMessage, query: URLSearchParams): string | undefined {
  const auth = req.headers.authorization
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim()
  const priv = req.headers['private-token']
  if (typeof priv === 'string' && priv !== '') return priv
  return query.get('private_token') ?? query.get('access_token') ?? undefined
}

export function basicCredentials(
  req: http.IncomingMessage,
): { username: string; password: string } | undefined {
  const auth = req.headers.authorization
  if (!auth || !/^basic\s+/i.test(auth)) return undefined
  const decoded = Buffer.from(auth.replace(/^basic\s+/i, ''), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

export type TokenCheck =
  | { ok: true; user: GitLabUser; scopes: string[]; oauth?: GitLabOAuthToken }
  | { ok: false; why: 'unknown' | 'revoked' | 'expired' }

export const nowSeconds = () => Math.floor(Date.now() / 1000)

/** What a token is: a user's own token, an OAuth token (live, expired or used up), or unknown. */
export function checkToken(world: GitLabWorld, token: string): TokenCheck {
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
export function actorFor(world: GitLabWorld, token: string | undefined): Actor {
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
export function requireScope(actor: Actor, ...accepted: string[]) {
  if (actor.user === null || accepted.some((s) => actor.scopes.includes(s))) return
  throw new HttpError(403, {
    error: 'insufficient_scope',
    error_description: 'The request requires higher privileges than provided by the access token.',
    scope: accepted.join(' '),
  })
}

/** Git over HTTP: the token's user, null when anonymous, 'denied' for a token that does not authenticate. */
export function gitUser(world: GitLabWorld, req: http.IncomingMessage): TokenCheck | null {
  const creds = basicCredentials(req)
  return creds ? checkToken(world, creds.password) : null
}
