/** OAuth as GitLab (Doorkeeper) serves it: the refresh grant and token info. */
import { randomBytes } from 'node:crypto'
import type http from 'node:http'
import { basicCredentials, checkToken, nowSeconds, tokenFromRequest } from './auth.js'
import { FIXED_DATE, routeMiss, send } from './http.js'
import type { GitLabOAuthToken, GitLabWorld } from './world.js'

/**
 * Doorkeeper's token endpoint (refresh grant only) and token info, as GitLab serves them.
 * A used refresh token is dead, and so is the access token issued with it.
 */
export async function oauthRoute(
  world: GitLabWorld,
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
  const fresh = issueToken(world, old.username, { scopes: old.scopes, applicationUid: app.uid })
  return send(res, 200, {
    access_token: fresh.accessToken,
    token_type: 'Bearer',
    expires_in: fresh.expiresIn,
    refresh_token: fresh.refreshToken,
    scope: fresh.scopes.join(' '),
    created_at: fresh.createdAt,
  })
}

/** Issues an OAuth token pair to a user, as GitLab's authorization code grant would. */
export function issueToken(
  world: GitLabWorld,
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
