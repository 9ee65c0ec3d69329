/**
 * Login through the hub: the OAuth code flow against a real JupyterHub (through its proxy, as a
 * browser goes), the session cookie, the browser redirect, logout, and the refusals (bad or
 * replayed state and code, unsafe `next`, tampered or revoked sessions).
 */

import { randomBytes } from 'node:crypto'
import t from 'tap'
import { startHub } from '../../dev/hub.js'
import { freePort } from '../../dev/ports.js'
import { prefersHtml, SESSION_COOKIE, SessionSealer, STATE_COOKIE, safeNext } from '../../lib/auth/session.js'
import { build } from '../helper.js'
import { CookieJar, hubLogin, type Step } from './jar.js'

const PREFIX = '/services/notebooks/'

t.test('next must be a path under the prefix', async (t) => {
  const ok: [string, string][] = [
    ['/services/notebooks/servers', '/services/notebooks/servers'],
    ['/services/notebooks/servers?project=a%20b', '/services/notebooks/servers?project=a%20b'],
    ['/services/notebooks', '/services/notebooks'],
    ['/services/notebooks/docs/#/x', '/services/notebooks/docs/'],
  ]
  for (const [next, expected] of ok) t.equal(safeNext(next, PREFIX), expected, next)
  for (const bad of [
    '//evil.example',
    '///evil.example',
    'https://evil.example/services/notebooks/',
    'http:/services/notebooks/',
    'services/notebooks/servers',
    '/\\evil.example',
    '/services/notebooks\\..\\..\\x',
    '/services/notebooks/../../hub/admin',
    '/services/notebooks/%2e%2e/%2e%2e/hub',
    '/services/notebooksX',
    '/hub/home',
    '/services/notebooks/\tx',
    '/services/notebooks/\nx',
    '',
    `/services/notebooks/${'a'.repeat(3000)}`,
  ]) {
    t.equal(safeNext(bad, PREFIX), null, JSON.stringify(bad))
  }
})

t.test('a browser navigation is told by its most preferred type', async (t) => {
  t.ok(prefersHtml('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'))
  t.ok(prefersHtml('application/json;q=0.5, text/html'))
  t.notOk(prefersHtml('application/json'))
  t.notOk(prefersHtml('application/json, text/html'))
  t.notOk(prefersHtml('*/*'))
  t.notOk(prefersHtml('text/html;q=0, application/json'))
  t.notOk(prefersHtml(undefined))
})

t.test('the session cookie can only be opened by the service, unchanged and in time', async (t) => {
  const sealer = new SessionSealer('service-token')
  const session = { token: 'hub-token-123', user: 'alice', expiresAt: Date.now() + 60_000 }
  const value = sealer.seal(session)
  t.notMatch(value, /hub-token-123|alice/, 'the payload is not readable')
  t.same(sealer.open(value), session)
  t.not(sealer.seal(session), value, 'a fresh IV each time')
  t.equal(new SessionSealer('another-token').open(value), null, 'another key')
  t.equal(sealer.open(value, session.expiresAt + 1), null, 'expired')
  const raw = Buffer.from(value.slice(3), 'base64url')
  for (const at of [0, 13, raw.length - 1]) {
    const tampered = Buffer.from(raw)
    tampered[at] = (tampered[at] ?? 0) ^ 1
    t.equal(sealer.open(`v1.${tampered.toString('base64url')}`), null, `byte ${at} flipped`)
  }
  for (const junk of [undefined, '', 'v1.', 'v2.abc', 'v1.!!!', `v1.${'A'.repeat(10_000)}`]) {
    t.equal(sealer.open(junk), null, `junk ${String(junk).slice(0, 10)}`)
  }
})

t.test('a hub that cannot be reached during login is a 503 naming it', async (t) => {
  const app = await build(t, {
    JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
    JUPYTERHUB_API_TOKEN: 'service-token',
    JUPYTERHUB_ORIGIN: 'https://hub.example.org',
  })
  const login = await app.inject({ url: `${PREFIX}login?next=${encodeURIComponent(`${PREFIX}servers`)}` })
  t.equal(login.statusCode, 302)
  const authorize = new URL(login.headers.location as string)
  t.equal(`${authorize.origin}${authorize.pathname}`, 'https://hub.example.org/hub/api/oauth2/authorize')
  t.equal(authorize.searchParams.get('redirect_uri'), `${PREFIX}oauth_callback`, 'the default callback')
  t.equal(authorize.searchParams.has('scope'), false)
  const state = authorize.searchParams.get('state') as string
  const res = await app.inject({
    url: `${PREFIX}oauth_callback?code=abc&state=${encodeURIComponent(state)}`,
    cookies: { [STATE_COOKIE]: state },
  })
  t.equal(res.statusCode, 503)
  t.same(res.json(), { messages: { error: 'JupyterHub cannot be reached.' }, code: 'UPSTREAM_UNAVAILABLE' })
})

t.test('OAuth login through a real JupyterHub', async (t) => {
  const serviceToken = randomBytes(24).toString('hex')
  const port = await freePort()
  const hub = await startHub({ serviceUrl: `http://127.0.0.1:${port}`, serviceToken })
  t.teardown(() => hub.stop())
  // No JUPYTERHUB_ORIGIN: the authorize URL is relative, resolved on the hub's public address.
  // A short cache (answers and refusals), so a test can outlive it; long enough that a refusal
  // is still remembered when the next request comes on a slow machine.
  const app = await build(
    t,
    {
      JUPYTERHUB_API_URL: hub.apiUrl,
      JUPYTERHUB_API_TOKEN: serviceToken,
      JUPYTERHUB_OAUTH_CALLBACK_URL: hub.oauthRedirectUri,
      NOTEBOOKS_LOGS_DIR: hub.logsDir,
    },
    { hubAuth: { ttlMs: 2_000 } },
  )
  await app.listen({ host: '127.0.0.1', port })
  await hub.createUser('alice')
  const bob = await hub.createUser('bob')
  const publicUrl = hub.publicUrl
  const service = `${publicUrl}${PREFIX}`
  const direct = `http://127.0.0.1:${port}${PREFIX}`
  const sealer = new SessionSealer(serviceToken)
  const api = { accept: 'application/json' }

  /** From `login` to the callback's answer: the step that comes back from the service. */
  async function throughHub(jar: CookieJar, loginStep: Step): Promise<{ callbackUrl: string; step: Step }> {
    t.equal(loginStep.status, 302, 'login redirects')
    const authorize = new URL(loginStep.location as string)
    t.equal(authorize.origin + authorize.pathname, `${publicUrl}/hub/api/oauth2/authorize`)
    t.equal(authorize.searchParams.get('client_id'), 'service-notebooks')
    t.equal(authorize.searchParams.get('redirect_uri'), hub.oauthRedirectUri)
    t.ok(authorize.searchParams.get('state'), 'with a state')
    let step = await jar.go(authorize)
    if (step.location?.includes('/hub/login')) {
      await hubLogin(jar, publicUrl, 'alice')
      step = await jar.go(authorize)
    }
    t.equal(step.status, 302, 'the hub authorizes')
    const callbackUrl = step.location as string
    t.ok(callbackUrl.startsWith(hub.oauthRedirectUri), 'back to the registered redirect URI')
    return { callbackUrl, step: await jar.go(callbackUrl) }
  }

  const jar = new CookieJar()
  let sessionValue = ''

  await t.test('a browser navigation without a session is sent to login and comes back', async (t) => {
    const first = await jar.go(`${service}user?x=1`)
    t.equal(first.status, 302)
    t.equal(first.location, `${service}login?next=${encodeURIComponent(`${PREFIX}user?x=1`)}`)
    const login = await jar.go(first.location as string)
    const stateCookie = login.setCookies.find((c) => c.name === STATE_COOKIE)
    t.ok(stateCookie?.attributes.httponly, 'state cookie is HttpOnly')
    t.equal(stateCookie?.attributes.path, PREFIX)
    const { step } = await throughHub(jar, login)
    t.equal(step.status, 302)
    t.equal(step.location, `${service}user?x=1`, 'back where it was going')
    const session = step.setCookies.find((c) => c.name === SESSION_COOKIE)
    t.ok(session, 'sets the session cookie')
    t.equal(session?.attributes.httponly, true, 'HttpOnly')
    t.equal(String(session?.attributes.samesite).toLowerCase(), 'lax', 'SameSite=Lax')
    t.equal(session?.attributes.path, PREFIX)
    t.notOk(session?.attributes.secure, 'not Secure over plain HTTP')
    t.ok(Number(session?.attributes['max-age']) > 3600, 'lasts hours')
    t.ok(
      step.setCookies.some((c) => c.name === STATE_COOKIE && c.value === ''),
      'the state is cleared',
    )
    sessionValue = session?.value ?? ''
    const opened = sealer.open(sessionValue)
    t.equal(opened?.user, 'alice')
    t.ok(opened && !sessionValue.includes(opened.token), 'the hub token is not readable in the cookie')

    const back = await jar.go(step.location as string)
    t.equal(back.status, 200)
    t.equal(back.json().name, 'alice')
  })

  await t.test('every API route accepts the cookie, with no hub call to verify it', async (t) => {
    const whoami = app.jupyterhub.whoami.bind(app.jupyterhub)
    let checks = 0
    app.jupyterhub.whoami = (token: string) => {
      checks++
      return whoami(token)
    }
    t.teardown(() => {
      app.jupyterhub.whoami = whoami
    })
    // Past the short TTL of this app's token answers: a header would be checked again by now.
    await new Promise((resolve) => setTimeout(resolve, 2_100))
    for (const path of ['user', 'servers', 'server_options', 'user', 'servers']) {
      const res = await jar.go(`${service}${path}`, { headers: api })
      t.equal(res.status, 200, path)
    }
    t.equal(checks, 0, 'no GET /user for cookie requests')
    const missing = await jar.go(`${service}servers/nope`, { headers: api })
    t.equal(missing.status, 404, 'authenticated, the server is just missing')
    const direct401 = await new CookieJar().go(`${direct}user`, { headers: api })
    t.equal(direct401.status, 401)
    t.same(direct401.json(), {
      messages: { error: 'A valid JupyterHub token or login is needed.' },
      code: 'NOT_AUTHENTICATED',
    })
    const post = await new CookieJar().go(`${direct}servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    t.equal(post.status, 401, 'a POST is never redirected, even with an HTML Accept')
  })

  await t.test('the token header comes first', async (t) => {
    const bad = await jar.go(`${service}user`, { headers: { ...api, authorization: 'token nonsense' } })
    t.equal(bad.status, 401, 'a bad token header is not rescued by the cookie')
    const other = await jar.go(`${service}user`, { headers: { ...api, authorization: `token ${bob.token}` } })
    t.equal(other.json().name, 'bob')
  })

  await t.test('forged, tampered and expired sessions are refused', async (t) => {
    const tampered = `${sessionValue.slice(0, -4)}${sessionValue.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`
    const forged = new SessionSealer('not-the-service-token').seal({
      token: bob.token,
      user: 'bob',
      expiresAt: Date.now() + 60_000,
    })
    const opened = sealer.open(sessionValue)
    const expired = sealer.seal({ token: opened?.token ?? '', user: 'alice', expiresAt: Date.now() - 1 })
    const renamed = sealer.seal({ token: opened?.token ?? '', user: 'bob', expiresAt: Date.now() + 60_000 })
    for (const [what, value] of Object.entries({ tampered, forged, expired, renamed })) {
      const res = await fetch(`${direct}user`, { headers: { ...api, cookie: `${SESSION_COOKIE}=${value}` } })
      t.equal(res.status, 401, what)
      await res.arrayBuffer()
    }
  })

  await t.test('bad, replayed and refused callbacks are 4xx with the error body', async (t) => {
    const fresh = new CookieJar()
    await hubLogin(fresh, publicUrl, 'alice')
    const login = await fresh.go(`${service}login`)
    const state = fresh.get(STATE_COOKIE) as string
    const { callbackUrl, step } = await throughHub(fresh, login)
    t.equal(step.location, `${service}docs`, 'without next: the docs')

    const noState = await fresh.go(callbackUrl, { headers: api })
    t.equal(noState.status, 400, 'the state is good for one callback')
    t.equal(noState.json().code, 'OAUTH_STATE_INVALID')

    const replay = await fresh.go(callbackUrl, { headers: { ...api, cookie: `${STATE_COOKIE}=${state}` } })
    t.equal(replay.status, 400, 'a code is good for one exchange')
    t.equal(replay.json().code, 'OAUTH_CODE_INVALID')
    t.notOk(
      replay.setCookies.some((c) => c.name === SESSION_COOKIE && c.value),
      'no session',
    )

    const code = new URL(callbackUrl).searchParams.get('code') as string
    const cases: [string, string, number, string][] = [
      ['wrong state', `?code=${code}&state=forged`, 400, 'OAUTH_STATE_INVALID'],
      ['no code', `?state=${state}`, 400, 'OAUTH_CALLBACK_INVALID'],
      ['nothing', '', 400, 'OAUTH_CALLBACK_INVALID'],
      ['refused', `?error=access_denied&state=${state}`, 403, 'OAUTH_DENIED'],
      ['made-up code', `?code=madeup&state=${state}`, 400, 'OAUTH_CODE_INVALID'],
    ]
    for (const [what, query, status, errorCode] of cases) {
      const res = await fetch(`${direct}oauth_callback${query}`, {
        headers: { ...api, cookie: `${STATE_COOKIE}=${state}` },
      })
      t.equal(res.status, status, what)
      t.equal(((await res.json()) as { code: string }).code, errorCode, what)
    }
  })

  await t.test('next must stay on the service', async (t) => {
    for (const next of [
      '//evil.example/x',
      'https://evil.example/',
      '/\\evil.example',
      '/hub/admin',
      '/services/notebooks/../../hub/admin',
    ]) {
      const res = await new CookieJar().go(`${direct}login?next=${encodeURIComponent(next)}`, {
        headers: api,
      })
      t.equal(res.status, 400, next)
      t.equal(res.json().code, 'INVALID_NEXT')
      t.notOk(res.location, 'no redirect')
    }
  })

  await t.test('the cookie is Secure when served over HTTPS', async (t) => {
    const secure = new CookieJar()
    await hubLogin(secure, publicUrl, 'alice')
    const https = { 'x-forwarded-proto': 'https' }
    const login = await secure.go(`${direct}login`, { headers: https })
    t.ok(login.setCookies.find((c) => c.name === STATE_COOKIE)?.attributes.secure, 'state cookie Secure')
    // The authorize URL is relative: the browser resolves it on the hub's address.
    const relative = new URL(login.location as string)
    const authorize = await secure.go(relative.pathname + relative.search, { base: publicUrl })
    const callback = new URL(authorize.location as string)
    const step = await secure.go(`${direct}oauth_callback${callback.search}`, { headers: https })
    t.equal(step.status, 302)
    t.equal(step.setCookies.find((c) => c.name === SESSION_COOKIE)?.attributes.secure, true, 'Secure')
  })

  await t.test('logout clears the session', async (t) => {
    t.equal((await jar.go(`${service}user`, { headers: api })).status, 200, 'still logged in')
    const out = await jar.go(`${service}logout`, { headers: api })
    t.equal(out.status, 204)
    const cleared = out.setCookies.find((c) => c.name === SESSION_COOKIE)
    t.equal(cleared?.value, '')
    t.equal(cleared?.attributes.path, PREFIX)
    t.equal((await jar.go(`${service}user`, { headers: api })).status, 401)
    const browser = await new CookieJar().go(`${service}logout`)
    t.equal(browser.status, 302)
    t.equal(browser.location, `${publicUrl}/hub/logout`, 'a browser goes on to the hub logout')
    const next = await new CookieJar().go(`${service}logout?next=${encodeURIComponent(`${PREFIX}docs`)}`)
    t.equal(next.location, `${service}docs`)
  })
  await t.test('a token the hub refused stops working at once, for its cookie too', async (t) => {
    const revoked = new CookieJar()
    await hubLogin(revoked, publicUrl, 'alice')
    const { step } = await throughHub(revoked, await revoked.go(`${service}login`))
    t.equal(step.status, 302)
    t.equal((await revoked.go(`${service}user`, { headers: api })).status, 200)
    const token = sealer.open(revoked.get(SESSION_COOKIE))?.token as string
    // The hub's id of that token: the user's tokens, the newest OAuth one for this service.
    const listed = await hub.admin('GET', '/users/alice/tokens')
    const all = Object.values(listed.body as Record<string, unknown>).flat() as {
      id: string
      oauth_client?: string
      created: string
    }[]
    const oauth = all
      .filter((tok) => tok.oauth_client && /notebooks/i.test(tok.oauth_client))
      .sort((a, b) => a.created.localeCompare(b.created))
    t.ok(oauth.length >= 1, 'the hub lists the OAuth token')
    for (const tok of oauth) await hub.admin('DELETE', `/users/alice/tokens/${tok.id}`)
    await new Promise((resolve) => setTimeout(resolve, 400))
    const res = await fetch(`${hub.apiUrl}/user`, { headers: { authorization: `token ${token}` } })
    t.not(res.status, 200, 'the hub no longer accepts the token')
    await res.arrayBuffer()
    // The cookie is verified by the service alone, until the hub refuses its token on a call.
    t.equal(
      (await revoked.go(`${service}user`, { headers: api })).status,
      200,
      'the cookie alone: no hub call',
    )
    const header = await fetch(`${direct}user`, { headers: { ...api, authorization: `token ${token}` } })
    t.equal(header.status, 401, 'the token in a header is checked and refused')
    await header.arrayBuffer()
    t.equal(
      (await revoked.go(`${service}user`, { headers: api })).status,
      401,
      'then its cookie gets 401 at once',
    )
    const browser = await revoked.go(`${service}user`)
    t.equal(browser.status, 302, 'a browser is sent to log in again')
  })
})
