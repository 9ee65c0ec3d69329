/**
 * The upstream plugins on a bare Fastify instance: the hub client and hub auth against a
 * real hub (through a counting proxy, to see what reaches it), GitLab access against the
 * GitLab stand-in.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { startCountingProxy } from '../../dev/counting-proxy.js'
import { createWorld } from '../../dev/gitlab-world.js'
import { startHub } from '../../dev/hub.js'
import { startGitLab } from '../../dev/stand-ins/gitlab/index.js'
import { loadConfig } from '../../lib/core/config.js'
import { ApiError, UpstreamError } from '../../lib/core/errors.js'
import { accessLevel } from '../../lib/gitlab/client.js'
import configPlugin from '../../plugins/config.js'
import gitlabPlugin from '../../plugins/gitlab.js'
import hubAuthPlugin, { type HubAuthOptions } from '../../plugins/hub-auth.js'
import hubLoginPlugin from '../../plugins/hub-login.js'
import jupyterhubPlugin from '../../plugins/jupyterhub.js'
import metricsPlugin from '../../plugins/metrics.js'

const dir = await mkdtemp(path.join(tmpdir(), 'renku-world-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const world = await createWorld(dir)
const gitlab = await startGitLab(world)
t.teardown(() => gitlab.close())
const serviceToken = randomBytes(24).toString('hex')
const hub = await startHub({ serviceUrl: 'http://127.0.0.1:9', serviceToken })
t.teardown(() => hub.stop())
const developer = await hub.createUser('developer', world.users.developer.token)
const proxy = await startCountingProxy(hub.apiUrl.replace(/\/hub\/api$/, ''))
t.teardown(() => proxy.close())

const config = loadConfig({
  JUPYTERHUB_API_URL: `${proxy.url}/hub/api`,
  JUPYTERHUB_API_TOKEN: serviceToken,
  GITLAB_URL: gitlab.url,
  LOG_LEVEL: 'silent',
})

async function bareApp(auth: HubAuthOptions = {}) {
  const app = Fastify()
  await app.register(configPlugin, { config })
  await app.register(metricsPlugin)
  await app.register(jupyterhubPlugin)
  await app.register(gitlabPlugin)
  await app.register(hubLoginPlugin)
  await app.register(hubAuthPlugin, auth)
  app.get('/whoami', { onRequest: app.authenticate }, async (request) => request.user)
  await app.ready()
  return app
}

const hubCalls = (pattern: RegExp) => proxy.requests.filter((request) => pattern.test(request)).length

t.test('jupyterhub: the service token, keep-alive, shared reads, one retry of reads only', async (t) => {
  const app = await bareApp()
  t.teardown(() => app.close())
  const user = await app.jupyterhub.getUser('developer')
  t.equal(user?.name, 'developer')
  t.same(
    Object.keys(user?.servers ?? {}).filter(Boolean),
    [],
    'no named servers (the default one is listed as stopped)',
  )
  t.same(
    user?.auth_state,
    { access_token: world.users.developer.token },
    'auth_state with the admin:auth_state scope',
  )
  t.equal(await app.jupyterhub.getUser('nobody'), null, 'an unknown user is null')

  const connections = proxy.connections
  for (let i = 0; i < 20; i++) await app.jupyterhub.getUser('developer')
  t.ok(proxy.connections - connections <= 1, 'twenty calls reuse the kept-alive connection')

  const before = hubCalls(/^GET \/hub\/api\/users\/developer/)
  const users = await Promise.all(Array.from({ length: 10 }, () => app.jupyterhub.getUser('developer')))
  t.ok(users.every((u) => u?.name === 'developer'))
  t.equal(hubCalls(/^GET \/hub\/api\/users\/developer/) - before, 1, 'ten concurrent reads, one hub call')

  proxy.failNext(/^\/hub\/api\/users\/developer/, 502)
  const retried = hubCalls(/^GET \/hub\/api\/users\/developer/)
  t.equal((await app.jupyterhub.getUser('developer'))?.name, 'developer', 'a 5xx is retried once')
  t.equal(hubCalls(/^GET \/hub\/api\/users\/developer/) - retried, 2)

  proxy.failNext(/^\/hub\/api\/users\/developer/, 502, 2)
  const twice = await app.jupyterhub.getUser('developer').catch((err: unknown) => err)
  t.ok(twice instanceof UpstreamError, 'two 5xx in a row fail')
  t.equal((twice as UpstreamError).statusCode, 502)
  t.equal((twice as UpstreamError).upstream, 'JupyterHub')

  proxy.failNext(/^\/hub\/api\/users\/developer/, 0)
  const dropped = hubCalls(/^GET \/hub\/api\/users\/developer/)
  t.equal(
    (await app.jupyterhub.getUser('developer'))?.name,
    'developer',
    'a dropped connection is retried once',
  )
  t.equal(hubCalls(/^GET \/hub\/api\/users\/developer/) - dropped, 2)
  proxy.failNext(/^\/hub\/api\/users\/developer/, 0, 2)
  const gone = await app.jupyterhub.getUser('developer').catch((err: unknown) => err)
  t.ok(gone instanceof UpstreamError && gone.statusCode === 503, 'two dropped connections: 503')

  proxy.failNext(/^\/hub\/api\/users\/developer\/servers\//, 502)
  const starts = hubCalls(/^POST /)
  const start = await app.jupyterhub.startServer('developer', 'x-1', {}).catch((err: unknown) => err)
  t.ok(start instanceof UpstreamError, 'a failed start is not retried')
  t.equal(hubCalls(/^POST /) - starts, 1)

  t.equal((await app.jupyterhub.whoami(developer.token))?.name, 'developer')
  t.equal(await app.jupyterhub.whoami('not-a-token'), null)
  t.equal(await app.jupyterhub.stopServer('developer', 'never-started'), 'missing')
})

t.test('hub auth: token or Bearer, cached briefly and bounded, refusals cached too', async (t) => {
  const app = await bareApp({ ttlMs: 300, maxEntries: 2 })
  t.teardown(() => app.close())
  const whoamiCalls = () => hubCalls(/^GET \/hub\/api\/user$/)
  const ask = (authorization?: string) =>
    app.inject({ url: '/whoami', headers: authorization ? { authorization } : {} })

  const start = whoamiCalls()
  const first = await ask(`token ${developer.token}`)
  t.equal(first.statusCode, 200)
  t.same(first.json(), { name: 'developer', kind: 'user', admin: false })
  t.equal((await ask(`Bearer ${developer.token}`)).statusCode, 200, 'Bearer')
  t.equal((await ask(`bearer ${developer.token}`)).statusCode, 200, 'any case')
  t.equal(whoamiCalls() - start, 1, 'the hub was asked once')

  await new Promise((resolve) => setTimeout(resolve, 400))
  await ask(`token ${developer.token}`)
  t.equal(whoamiCalls() - start, 2, 'asked again after the TTL')

  const other = await hub.createUser('other')
  const third = await hub.createUser('third')
  await ask(`token ${other.token}`)
  await ask(`token ${third.token}`)
  await ask(`token ${developer.token}`)
  t.equal(whoamiCalls() - start, 5, 'with room for two, the oldest token was forgotten')

  const refused = whoamiCalls()
  const bad = await ask('token not-a-real-token')
  t.equal(bad.statusCode, 401)
  t.equal((await ask('token not-a-real-token')).statusCode, 401)
  t.equal(whoamiCalls() - refused, 1, 'a refused token is remembered too')

  const none = whoamiCalls()
  t.equal((await ask()).statusCode, 401, 'no header')
  t.equal((await ask('Basic dXNlcjpwYXNz')).statusCode, 401, 'another scheme')
  t.equal(whoamiCalls() - none, 0, 'the hub is not asked without a token')
  const service = await ask(`token ${serviceToken}`)
  t.equal(service.statusCode, 403, "the service's own token is not a user")
})

t.test('hub auth: options it cannot honour are refused up front', async (t) => {
  for (const [options, message] of [
    [{ ttlMs: 600_000 }, /options\.ttlMs must be a whole number from 1 to 300000, not 600000/],
    [{ ttlMs: 0 }, /options\.ttlMs must be/],
    [{ ttlMs: 1000, refusedTtlMs: 2000 }, /options\.refusedTtlMs must be a whole number from 1 to 1000/],
    [{ maxEntries: 1.5 }, /options\.maxEntries must be/],
    [{ refreshAfterMs: 300 }, /options\.refreshAfterMs is not an option/],
  ] as [Record<string, unknown>, RegExp][]) {
    await t.rejects(bareApp(options as HubAuthOptions), message, JSON.stringify(options))
  }
})

t.test(
  'hub auth: one check per token per TTL, shared by its first uses, never trusted past the limit',
  async (t) => {
    const whoamiPath = /^\/hub\/api\/user$/
    const whoamiCalls = () => hubCalls(/^GET \/hub\/api\/user$/)
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
    async function timedAsk(app: Awaited<ReturnType<typeof bareApp>>, token: string) {
      const started = performance.now()
      const res = await app.inject({ url: '/whoami', headers: { authorization: `token ${token}` } })
      return { status: res.statusCode, ms: performance.now() - started, message: String(res.json().message) }
    }

    await t.test('within the TTL no call at all; past it, one call shared by every request', async (t) => {
      const app = await bareApp({ ttlMs: 1500 })
      t.teardown(() => app.close())
      const { token } = await hub.createUser('refresher')
      const start = whoamiCalls()
      const first = await Promise.all(Array.from({ length: 30 }, () => timedAsk(app, token)))
      t.ok(
        first.every((answer) => answer.status === 200),
        'thirty concurrent first uses are accepted',
      )
      t.equal(whoamiCalls() - start, 1, 'with one GET /user')
      for (let i = 0; i < 10; i++) {
        t.equal((await timedAsk(app, token)).status, 200)
        await sleep(100)
      }
      t.equal(whoamiCalls() - start, 1, 'a token in use is not re-checked within its TTL')

      // Past its limit, a token is checked again before it is answered, once for all requests.
      await sleep(600)
      proxy.delayNext(whoamiPath, 600)
      const again = await Promise.all(Array.from({ length: 10 }, () => timedAsk(app, token)))
      t.ok(again.every((answer) => answer.status === 200))
      t.ok(
        Math.min(...again.map((answer) => answer.ms)) >= 550,
        'past the limit the requests wait for the hub',
      )
      t.equal(whoamiCalls() - start, 2, 'one more GET /user')
    })

    await t.test('a token revoked at the hub stops being accepted, and stays refused', async (t) => {
      const app = await bareApp({ ttlMs: 1500 })
      t.teardown(() => app.close())
      const { token } = await hub.createUser('revoked-soon')
      const checked = performance.now()
      t.equal((await timedAsk(app, token)).status, 200)
      const listed = await hub.admin('GET', '/users/revoked-soon/tokens')
      const tokens = Object.values(listed.body as Record<string, unknown>).flat() as { id: string }[]
      for (const { id } of tokens) await hub.admin('DELETE', `/users/revoked-soon/tokens/${id}`)

      const statuses: number[] = []
      let refusedAt: number | undefined
      while (performance.now() - checked < 2300) {
        const { status } = await timedAsk(app, token)
        statuses.push(status)
        if (status !== 200) refusedAt ??= performance.now() - checked
        await sleep(50)
      }
      // Trusted until its TTL is over, then checked again: refused from that check on.
      t.ok(
        refusedAt !== undefined && refusedAt >= 1400 && refusedAt <= 1800,
        `refused at its next check, ${refusedAt?.toFixed(0)} ms after the first`,
      )
      const firstRefusal = statuses.findIndex((status) => status !== 200)
      t.ok(
        statuses.slice(firstRefusal).every((status) => status === 401),
        `401 ever after, never accepted again (${statuses.join(' ')})`,
      )
    })

    await t.test(
      'the hub unreachable: an unknown token is 503, a known one works until its limit',
      async (t) => {
        const ttlMs = 1000
        const app = await bareApp({ ttlMs })
        t.teardown(() => app.close())
        const { token } = await hub.createUser('through-outage')
        const stranger = await hub.createUser('stranger')
        const before = performance.now()
        t.equal((await timedAsk(app, token)).status, 200)
        proxy.setOffline(true)
        t.teardown(() => proxy.setOffline(false))

        const unknown = await timedAsk(app, stranger.token)
        t.equal(unknown.status, 503, 'a token not in the cache: 503')
        t.match(unknown.message, /JupyterHub/, 'naming JupyterHub')

        // Each answer's end, from before the first check: an upper bound of when it was decided.
        const accepted: number[] = []
        let failed: { status: number; at: number; message: string } | undefined
        while (!failed && performance.now() - before < 2 * ttlMs) {
          const answer = await timedAsk(app, token)
          const at = performance.now() - before
          if (answer.status === 200) accepted.push(at)
          else failed = { status: answer.status, at, message: answer.message }
          await sleep(30)
        }
        const last = Math.max(...accepted)
        t.ok(last >= 0.7 * ttlMs, `accepted until close to its limit, ${last.toFixed(0)} ms`)
        // A few milliseconds of slack: the check itself starts a moment after \`before\`.
        t.ok(
          last <= ttlMs + 20,
          `never past the limit of ${ttlMs} ms (last accepted at ${last.toFixed(0)} ms)`,
        )
        t.equal(failed?.status, 503, 'then 503, not 401')
        t.match(failed?.message, /JupyterHub/)
        t.ok((failed?.at ?? Infinity) <= ttlMs + 300, `soon after the limit (${failed?.at.toFixed(0)} ms)`)

        proxy.setOffline(false)
        t.equal((await timedAsk(app, token)).status, 200, 'the hub back, the token is checked and accepted')
      },
    )

    await t.test('a refusal is remembered for refusedTtlMs', async (t) => {
      const app = await bareApp({ ttlMs: 3000, refusedTtlMs: 300 })
      t.teardown(() => app.close())
      const { token } = await hub.createUser('refused-once')
      const start = whoamiCalls()
      proxy.failNext(whoamiPath, 403)
      t.equal((await timedAsk(app, token)).status, 401, 'the hub refuses the token once')
      t.equal((await timedAsk(app, token)).status, 401, 'the refusal is remembered')
      t.equal(whoamiCalls() - start, 1)
      await sleep(400)
      t.equal((await timedAsk(app, token)).status, 200, 'and asked again after a short while')
      t.equal(whoamiCalls() - start, 2)
    })
  },
)

t.test(
  'gitlab: projects by encoded path, effective access level, branches, commits, registry tags',
  async (t) => {
    const app = await bareApp()
    t.teardown(() => app.close())
    const tokens = world.users
    const demo = await app.gitlab.getProject(tokens.developer.token, 'demo-group/demo-project')
    t.equal(demo.id, 101)
    t.ok(
      gitlab.requests.some((r) => r.path === '/api/v4/projects/demo-group%2Fdemo-project'),
      'the path is URL-encoded as one segment',
    )
    t.equal(accessLevel(demo), 30, 'developer: project access')
    t.equal(
      accessLevel(await app.gitlab.getProject(tokens.maintainer.token, 'demo-group/demo-project')),
      40,
      'maintainer: group access',
    )
    t.equal(accessLevel(await app.gitlab.getProject(tokens.guest.token, 'demo-group/demo-project')), 10)
    const nested = await app.gitlab.getProject(tokens.outsider.token, 'science/lab/public-notebook')
    t.equal(accessLevel(nested), 0, 'a public project seen by a non-member')

    const hidden = await app.gitlab
      .getProject(tokens.outsider.token, 'demo-group/demo-project')
      .catch((e: unknown) => e)
    t.ok(
      hidden instanceof ApiError && hidden.statusCode === 404,
      'a private project is not found for an outsider',
    )
    const revoked = await app.gitlab
      .getProject(world.revokedToken, 'demo-group/demo-project')
      .catch((e: unknown) => e)
    t.ok(revoked instanceof ApiError && revoked.statusCode === 401, 'a revoked token is 401')

    const { masterFirst, masterSecond } = world.commits.demo
    t.equal(
      await app.gitlab.resolveCommit(tokens.developer.token, demo, masterFirst.slice(0, 7).toUpperCase()),
      masterFirst,
    )
    const guestCommit = await app.gitlab
      .resolveCommit(tokens.guest.token, demo, masterFirst)
      .catch((e: unknown) => e)
    t.ok(guestCommit instanceof ApiError && guestCommit.statusCode === 403, 'a guest may not read the code')
    const branchName = await app.gitlab
      .resolveCommit(tokens.developer.token, demo, 'feature')
      .catch((e: unknown) => e)
    t.ok(branchName instanceof ApiError && branchName.statusCode === 404, 'a branch name is not a commit')
    await t.resolves(app.gitlab.requireBranch(tokens.developer.token, demo, 'feature'))
    const noBranch = await app.gitlab
      .requireBranch(tokens.developer.token, demo, 'nope')
      .catch((e: unknown) => e)
    t.ok(noBranch instanceof ApiError && noBranch.statusCode === 404, 'an unknown branch is 404')

    t.equal(await app.gitlab.hasImageTag(tokens.developer.token, demo, masterFirst.slice(0, 7)), true)
    t.equal(
      await app.gitlab.hasImageTag(tokens.developer.token, demo, masterSecond.slice(0, 7)),
      false,
      'no image for this commit',
    )
    t.equal(
      await app.gitlab.hasImageTag(tokens.guest.token, demo, masterFirst.slice(0, 7)),
      false,
      'a registry the user may not read',
    )
  },
)
