/**
 * Server reads from this replica's copy of the hub's state (the README's "Performance"), over a real hub with a
 * counting proxy between the service and the hub: what reaches the hub, how fresh the answers
 * are after changes made here and at the hub directly, failed spawns, and the hub going away.
 */

import t from 'tap'
import { startStack } from '../../dev/stack.js'
import type { ServerObject } from '../../schemas/servers.js'
import { build } from '../helper.js'
import { countedReplica } from '../support/counted-replica.js'
import { readEvents } from '../support/sse.js'

const stack = await startStack()
t.teardown(() => stack.stop())
const { hub, users, world } = stack
// The replica under test: the stack's configuration, but reaching the hub through the proxy.
const { proxy, base } = await countedReplica(t, stack, { NOTEBOOKS_LOGS_DIR: hub.logsDir })

type ServerList = { servers: Record<string, ServerObject> }

// biome-ignore lint/suspicious/noExplicitAny: the answers are JSON of several shapes
async function call<T = any>(token: string, method: string, route: string, body?: unknown) {
  const response = await fetch(new URL(route, base), {
    method,
    headers: {
      authorization: `token ${token}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T }
}

const listOf = async (token: string) => (await call<ServerList>(token, 'GET', 'servers')).body.servers
const hubCalls = (pattern: RegExp, from = 0) =>
  proxy.requests.slice(from).filter((request) => pattern.test(request)).length
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Milliseconds until `check` holds, probing every 50 ms; fails after `limitMs`. */
async function timeUntil(check: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const start = performance.now()
  while (!(await check())) {
    if (performance.now() - start > limitMs) throw new Error(`not within ${limitMs} ms: ${what}`)
    await sleep(50)
  }
  return performance.now() - start
}

const developer = users.developer.token
const demo = { namespace: 'demo-group', project: 'demo-project' }

t.test('reads come from the copy; own launches and stops show at once, the hub’s within 2 s', async (t) => {
  t.same(await listOf(developer), {}, 'no servers yet')
  const mark = proxy.requests.length
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await call(developer, 'GET', 'servers')).status)
  statuses.push((await call(developer, 'GET', 'user')).status)
  t.ok(
    statuses.every((status) => status === 200),
    'every read answers',
  )
  t.equal(hubCalls(/^GET \/hub\/api\/users\/developer/, mark), 0, 'twenty-one reads, no read of the user')

  // The hub holds the start open until the server is up (a few seconds): meanwhile, the copy
  // already shows it as starting, before any list could have seen it.
  const launching = call<ServerObject>(developer, 'POST', 'servers', {
    ...demo,
    commit_sha: world.commits.demo.masterFirst,
  })
  await timeUntil(
    async () => hubCalls(/^POST \/hub\/api\/users\/developer\/servers\//, mark) === 1,
    10_000,
    'the start sent to the hub',
  )
  const during = Object.values(await listOf(developer))
  t.equal(during.length, 1, 'the launch is listed while the hub has not answered')
  t.equal(during[0]?.status.state, 'starting')
  const launch = await launching
  t.equal(launch.status, 201)
  const name = launch.body.name
  const after = await call<ServerObject>(developer, 'GET', `servers/${name}`)
  t.equal(after.body.status.state, 'running', 'the next read shows the server running')

  t.equal((await call(developer, 'DELETE', `servers/${name}`)).status, 204)
  t.same(await listOf(developer), {}, 'the next read after the stop no longer lists it')

  // Changes made at the hub directly (another replica, an admin, the culler).
  const started = await hub.admin('POST', '/users/developer/servers/elsewhere', {})
  t.equal(started.status, 201, 'started at the hub')
  const seenStart = await timeUntil(
    async () => (await listOf(developer)).elsewhere?.status.state === 'running',
    2000,
    'a start at the hub',
  )
  t.ok(seenStart <= 2000, `a start at the hub shows within 2 s (${Math.round(seenStart)} ms)`)
  const stopped = await hub.admin('DELETE', '/users/developer/servers/elsewhere', { remove: true })
  t.ok([202, 204].includes(stopped.status), 'stopped at the hub')
  const seenStop = await timeUntil(
    async () => (await listOf(developer)).elsewhere === undefined,
    2000,
    'a stop at the hub',
  )
  t.ok(seenStop <= 2000, `a stop at the hub shows within 2 s (${Math.round(seenStop)} ms)`)
  // A user who leaves the active list holding servers is re-read (at most once a second) until
  // the copy settles: on a slow machine that can take one more read.
  const userReads = hubCalls(/^GET \/hub\/api\/users\/developer\?/, mark)
  t.ok(
    userReads >= 4 && userReads <= 5,
    'the user was read alone only for the launch (its GitLab token), after its own start and stop, ' +
      `and when it left the active list (${userReads} reads)`,
  )
})

t.test('a server whose spawn failed stays listed as failed, and goes when removed', async (t) => {
  const maintainer = users.maintainer.token
  t.same(await listOf(maintainer), {})
  // Pending for a moment (so a list sees it), then failing: the user drops out of the active list.
  const failing = await hub.admin('POST', '/users/maintainer/servers/broken', {
    jhub_test_delay: 1.5,
    jhub_test_fail: 'raise',
  })
  t.equal(failing.status, 500, 'the hub reports the failed spawn')
  const active = await hub.admin('GET', '/users?state=active')
  t.notOk(
    (active.body as { name: string }[]).some((user) => user.name === 'maintainer'),
    'the hub no longer lists the user as active',
  )
  await timeUntil(
    async () => (await listOf(maintainer)).broken?.status.state === 'failed',
    2000,
    'the failed server',
  )
  await sleep(2500)
  const later = await call<ServerObject>(maintainer, 'GET', 'servers/broken')
  t.equal(later.status, 200, 'still listed seconds later')
  t.same(
    later.body.status,
    {
      state: 'failed',
      ready: false,
      message:
        'The server failed to start: jhub_test_fail asked this spawn to fail. ' +
        'Launch it again to retry, or stop it to remove it.',
      reason: 'SpawnFailed',
    },
    'in words saying it failed to start, and why',
  )

  // A replica started now, after the failure, finds it too (the user is not in the active list).
  const restarted = await build(t, {
    JUPYTERHUB_API_URL: hub.apiUrl,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    GITLAB_URL: stack.gitlab.url,
  })
  const onRestarted = async () => {
    const response = await restarted.inject({
      url: '/services/notebooks/servers',
      headers: { authorization: `token ${maintainer}` },
    })
    return (response.json() as ServerList).servers.broken?.status
  }
  const found = await timeUntil(
    async () => (await onRestarted())?.reason === 'SpawnFailed',
    2000,
    'on a new replica',
  )
  t.ok(found <= 2000, `a replica started after the failure lists it as failed (${Math.round(found)} ms)`)
  t.same(await onRestarted(), later.body.status, 'in the same words')

  const removed = await hub.admin('DELETE', '/users/maintainer/servers/broken', { remove: true })
  t.equal(removed.status, 204, 'removed at the hub')
  const gone = await timeUntil(
    async () => (await listOf(maintainer)).broken === undefined,
    2000,
    'the removal of the failed server',
  )
  t.ok(gone <= 2000, `its removal at the hub shows within 2 s (${Math.round(gone)} ms)`)
})

t.test(
  'a server stopped at the hub without being removed says it was stopped, on every replica',
  async (t) => {
    const launch = await call<ServerObject>(developer, 'POST', 'servers', {
      ...demo,
      commit_sha: world.commits.demo.masterFirst,
    })
    t.equal(launch.status, 201)
    const name = launch.body.name
    const mark = proxy.requests.length
    // As z2jh's idle culler does with `removeNamedServers: false`, or an admin: stopped, not removed.
    const stopped = await hub.admin('DELETE', `/users/developer/servers/${name}`)
    t.ok([202, 204].includes(stopped.status), 'stopped at the hub')
    await timeUntil(
      async () => (await listOf(developer))[name]?.status.reason === 'Stopped',
      2000,
      'the stopped server',
    )
    const words = {
      state: 'failed',
      ready: false,
      message:
        'The server was stopped (for example after being idle); launch it again to go on, or stop it to remove it.',
      reason: 'Stopped',
    }
    const listed = await call<ServerObject>(developer, 'GET', `servers/${name}`)
    t.same(listed.body.status, words, 'in words saying it was stopped, not that it failed to start')
    t.equal(listed.body.started, null)
    await sleep(1500)
    for (let i = 0; i < 10; i++) await call(developer, 'GET', 'servers')
    t.equal(
      hubCalls(/^GET \/hub\/api\/users\/developer\/servers\/[^/]+\/progress$/, mark),
      1,
      'the hub was asked once how the stop came, however many reads followed',
    )
    const progress = await readEvents(new URL(`servers/${name}/progress`, base).href, {
      headers: { authorization: `token ${developer}` },
    })
    t.same(
      progress.events.map((event) => [event.data.step, event.data.message]),
      [['failed', words.message]],
      'its progress stream says the same, in one last event',
    )

    const other = await build(t, {
      JUPYTERHUB_API_URL: hub.apiUrl,
      JUPYTERHUB_API_TOKEN: stack.serviceToken,
      JUPYTERHUB_ORIGIN: hub.publicUrl,
      GITLAB_URL: stack.gitlab.url,
    })
    const onOther = async () => {
      const response = await other.inject({
        url: `/services/notebooks/servers/${name}`,
        headers: { authorization: `token ${developer}` },
      })
      return response.statusCode === 200 ? (response.json() as ServerObject).status : undefined
    }
    await timeUntil(async () => (await onOther())?.reason === 'Stopped', 2000, 'on another replica')
    t.same(await onOther(), words, 'another replica says the same')

    // Launched again through the service, it starts again under its name.
    const again = await call<ServerObject>(developer, 'POST', 'servers', {
      ...demo,
      commit_sha: world.commits.demo.masterFirst,
    })
    t.ok([201, 202].includes(again.status), `launched again (${again.status})`)
    t.equal(again.body.name, name)
    await timeUntil(
      async () => (await listOf(developer))[name]?.status.state === 'running',
      10_000,
      'the server running again',
    )
    t.equal((await call(developer, 'DELETE', `servers/${name}`)).status, 204)
  },
)

t.test('the hub going away: 503 naming JupyterHub within seconds, then fresh data', async (t) => {
  // A token the replica has just checked, so its answer about the token outlives the outage.
  const { token } = await hub.createUser('developer')
  t.equal((await call(token, 'GET', 'servers')).status, 200)
  // Right after a list or probe went through: the hub has just answered when it goes away.
  const asked = hubCalls(/^GET \/hub\/api\/(users\?|$)/)
  await timeUntil(async () => hubCalls(/^GET \/hub\/api\/(users\?|$)/) > asked, 2000, 'a list or probe')
  proxy.setOffline(true)
  const wentAway = performance.now()
  let answer = await call(token, 'GET', 'servers')
  t.equal(answer.status, 200, 'at first, the copy (under 2 s old) still answers')
  await timeUntil(
    async () => {
      answer = await call(token, 'GET', 'servers')
      return answer.status !== 200
    },
    3500,
    'a 503',
  )
  const after = performance.now() - wentAway
  // The hub's last answer (a list, or the once-a-second probe) came at most a second before.
  t.ok(after >= 1000, `not before the hub has been silent for about 2 s (${Math.round(after)} ms)`)
  t.equal(answer.status, 503)
  t.same(answer.body, { messages: { error: 'JupyterHub cannot be reached.' }, code: 'UPSTREAM_UNAVAILABLE' })
  t.equal((await call(token, 'GET', 'user')).status, 503, 'GET user too')

  // Meanwhile a server starts at the hub; once the hub is back, the service shows it.
  t.equal((await hub.admin('POST', '/users/developer/servers/meanwhile', {})).status, 201)
  proxy.setOffline(false)
  const back = await timeUntil(
    async () => {
      const response = await call<ServerList>(token, 'GET', 'servers')
      return response.status === 200 && response.body.servers.meanwhile?.status.state === 'running'
    },
    2000,
    'fresh data',
  )
  t.ok(back <= 2000, `back with fresh data within 2 s (${Math.round(back)} ms)`)
  await hub.admin('DELETE', '/users/developer/servers/meanwhile', { remove: true })
})

t.test('many users: the hub sees about one list a second, however many users read', async (t) => {
  const count = 200
  const names = Array.from({ length: count }, (_, i) => `reader-${i}`)
  t.equal((await hub.admin('POST', '/users', { usernames: names })).status, 201)
  const tokens: string[] = []
  for (let i = 0; i < count; i += 20) {
    const batch = await Promise.all(names.slice(i, i + 20).map((name) => hub.createUser(name)))
    tokens.push(...batch.map((user) => user.token))
  }
  // A few of them have a server.
  for (const name of names.slice(0, 2)) {
    t.equal((await hub.admin('POST', `/users/${name}/servers/work`, {})).status, 201)
  }

  // Concurrent first uses of one token: one `GET /user`.
  const fresh = proxy.requests.length
  const first = await Promise.all(
    Array.from({ length: 50 }, () => call(tokens[5] as string, 'GET', 'servers')),
  )
  t.ok(
    first.every((response) => response.status === 200),
    'fifty concurrent first uses of a token answer',
  )
  t.equal(hubCalls(/^GET \/hub\/api\/user$/, fresh), 1, 'and the hub is asked about the token once')

  const mark = proxy.requests.length
  const started = performance.now()
  const requests = 2000
  let next = 0
  const statuses: number[] = []
  let withServer = 0
  // 50 clients at once, each request for the next user in turn.
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      for (let i = next++; i < requests; i = next++) {
        const response = await call<ServerList>(tokens[i % count] as string, 'GET', 'servers')
        statuses.push(response.status)
        if (response.body?.servers?.work) withServer++
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  t.equal(statuses.length, requests)
  t.ok(
    statuses.every((status) => status === 200),
    `every read answered 200 (others: ${statuses.filter((status) => status !== 200).join(' ') || 'none'})`,
  )
  t.equal(withServer, (requests / count) * 2, 'the two users with a server see it in every read')
  const whoami = hubCalls(/^GET \/hub\/api\/user$/, mark)
  const lists = hubCalls(/^GET \/hub\/api\/users\?/, mark)
  const total = proxy.requests.length - mark
  t.ok(whoami <= count - 1, `at most one GET /user per new token (${whoami})`)
  t.equal(hubCalls(/^GET \/hub\/api\/users\/reader/, mark), 0, 'no user was read alone')
  const allowed = Math.ceil(seconds * 2) + count
  t.ok(
    total <= allowed,
    `${requests} reads over ${count} users in ${seconds.toFixed(1)} s cost the hub ${total} requests ` +
      `(${lists} lists, ${whoami} GET /user), at most ${allowed}`,
  )
  for (const name of names.slice(0, 2))
    await hub.admin('DELETE', `/users/${name}/servers/work`, { remove: true })
})
