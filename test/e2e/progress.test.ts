/**
 * The progress stream of a start (the README's "Following a start") over a real JupyterHub whose local spawner
 * reports its steps: the whole sequence, resuming on another replica, failures, a running
 * server, access, keep-alives, and the load many watchers put on the hub.
 */

import t, { type Test } from 'tap'
import { startCountingProxy } from '../../dev/counting-proxy.js'
import { eventually, startStack } from '../../dev/stack.js'
import { build } from '../helper.js'
import { readEvents, type SseEvent } from '../support/sse.js'

// Starts answer 202 at once, so a test can watch them while they run.
const stack = await startStack({ hubEnv: { JHUB_SLOW_SPAWN_TIMEOUT: '0' } })
t.teardown(() => stack.stop())
const { hub, users, world, gitlab } = stack
const developer = stack.as(users.developer)
const token = { authorization: `token ${users.developer.token}` }

// A second replica of the service against the same hub, through a proxy that counts its calls.
const hubProxy = await startCountingProxy(new URL(hub.apiUrl).origin)
t.teardown(() => hubProxy.close())
const replica = await build(
  t,
  {
    JUPYTERHUB_API_URL: `${hubProxy.url}/hub/api`,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    JUPYTERHUB_ORIGIN: hub.publicUrl,
    GITLAB_URL: gitlab.url,
  },
  { progress: { keepAliveMs: 200 } },
)
await replica.listen({ host: '127.0.0.1', port: 0 })
const replicaUrl = `http://127.0.0.1:${(replica.server.address() as { port: number }).port}${stack.config.servicePrefix}`

const progressOf = (base: string, name: string) => `${base}servers/${encodeURIComponent(name)}/progress`

/** Starts a server through the hub itself, with the spawner's test delay: the start stays pending a while. */
async function slowStart(name: string, options: Record<string, unknown> = {}): Promise<string> {
  const res = await hub.admin('POST', `/users/developer/servers/${name}`, {
    namespace: 'demo-group',
    project: 'demo-project',
    branch: 'master',
    commit_sha: world.commits.demo.masterFirst,
    project_id: 101,
    repository: `${gitlab.url}/demo-group/demo-project.git`,
    jhub_test_delay: 3,
    ...options,
  })
  if (res.status !== 202 && res.status !== 201) throw new Error(`start of ${name}: ${res.status}`)
  const server = await eventually(async () => {
    const { status, body } = await developer('GET', `servers/${name}`)
    // The hub lists a pending server a moment before it records the start's time.
    return status === 200 && body.started ? body : undefined
  })
  // The other replica keeps its own copy of the hub's state: it sees the start within a second or two.
  await eventually(async () => {
    const res = await fetch(`${replicaUrl}servers/${encodeURIComponent(name)}`, { headers: token })
    return res.status === 200 ? true : undefined
  })
  return String(Date.parse(server.started))
}

const steps = (events: SseEvent[]) => events.map((e) => e.data.step)

function checkOrder(t: Test, events: SseEvent[]) {
  const progress = events.map((e) => e.data.progress as number)
  t.same(
    progress,
    [...progress].sort((a, b) => a - b),
    `progress never decreases (${progress.join(', ')})`,
  )
  t.equal(new Set(steps(events)).size, events.length, 'no step twice')
  t.ok(
    events.every((e) => e.event === 'progress'),
    'every event is a progress event',
  )
}

t.test('a slow start: requested, cloning, starting, then ready with the url', async (t) => {
  const started = await slowStart('slow-whole')
  const stream = await readEvents(progressOf(stack.serviceUrl, 'slow-whole'), { headers: token })
  t.equal(stream.status, 200)
  t.match(stream.headers.get('content-type'), /^text\/event-stream/)
  t.equal(stream.ended, true, 'the stream ends after its last event')
  t.same(steps(stream.events), ['requested', 'cloning', 'starting', 'ready'])
  t.same(
    stream.events.map((e) => e.id),
    [0, 3, 4, 5].map((i) => `${started}-${i}`),
    "ids: the server's start and the step",
  )
  checkOrder(t, stream.events)
  t.match(stream.events[0]?.data, { progress: 0, message: 'JupyterHub accepted the start of the server.' })
  t.match(stream.events[1]?.data, { message: 'The repository is being cloned.' })
  t.match(stream.events[2]?.data, { message: 'The notebook server is starting.' })
  t.same(stream.events[3]?.data, {
    step: 'ready',
    progress: 100,
    message: 'Your server is ready.',
    ready: true,
    url: `${hub.publicUrl}/user/developer/slow-whole/`,
  })

  const again = await readEvents(progressOf(stack.serviceUrl, 'slow-whole'), { headers: token })
  t.same(steps(again.events), ['ready'], 'a running server: one ready event')
  t.equal(again.events[0]?.id, `${started}-5`, 'with the same id')
  t.equal(again.ended, true)
  const after = await readEvents(progressOf(stack.serviceUrl, 'slow-whole'), {
    headers: { ...token, 'last-event-id': `${started}-5` },
  })
  t.equal(after.status, 204, 'after the last event, nothing (an EventSource stops reconnecting)')
})

t.test('resuming with Last-Event-ID on another replica: none repeated, none skipped', async (t) => {
  const started = await slowStart('slow-resume', { jhub_test_delay: 4 })
  const first = await readEvents(progressOf(stack.serviceUrl, 'slow-resume'), {
    headers: token,
    until: (events) => events.length === 1,
  })
  t.equal(first.ended, false, 'the first connection dropped mid-way')
  t.same(steps(first.events), ['requested'])
  const lastId = first.events[0]?.id as string
  t.equal(lastId, `${started}-0`)

  const rest = await readEvents(progressOf(replicaUrl, 'slow-resume'), {
    headers: { ...token, 'last-event-id': lastId },
  })
  t.same(steps(rest.events), ['cloning', 'starting', 'ready'], 'the other replica goes on after it')
  t.same(
    rest.events.map((e) => e.id),
    [3, 4, 5].map((i) => `${started}-${i}`),
    'with the ids the first replica would give',
  )
  checkOrder(t, [...first.events, ...rest.events])

  const stale = await readEvents(progressOf(replicaUrl, 'slow-resume'), {
    headers: { ...token, 'last-event-id': '1234-2' },
  })
  t.same(steps(stale.events), ['ready'], 'an id of another start resumes nothing: the whole (here: ready)')
})

t.test('a start that fails: the last event says why', async (t) => {
  await slowStart('slow-broken', {
    repository: `${gitlab.url}/demo-group/no-such-project.git`,
    jhub_test_delay: 1,
  })
  const stream = await readEvents(progressOf(stack.serviceUrl, 'slow-broken'), { headers: token })
  const last = stream.events.at(-1)?.data
  t.equal(last?.step, 'failed')
  t.equal(last?.failed, true)
  t.match(last?.message, /^The repository could not be cloned: .+\.$/, last?.message)
  t.notOk(steps(stream.events).includes('ready'))
  checkOrder(t, stream.events)
  t.equal(stream.ended, true)

  await eventually(async () => {
    const { body } = await developer('GET', 'servers/slow-broken')
    return body?.status?.state === 'failed' ? true : undefined
  })
  const once = await readEvents(progressOf(replicaUrl, 'slow-broken'), { headers: token })
  t.same(steps(once.events), ['failed'], 'a failed server: one failed event')
  t.match(once.events[0]?.data.message, /^The repository could not be cloned/)
  for (const seen of [stream.events.at(-1)?.id, once.events[0]?.id]) {
    const reconnect = await readEvents(progressOf(replicaUrl, 'slow-broken'), {
      headers: { ...token, 'last-event-id': String(seen) },
    })
    t.equal(reconnect.status, 204, `reconnecting after the failed event (${seen}): nothing more`)
  }
})

t.test("access: token or nothing, only the caller's servers, valid names", async (t) => {
  const none = await readEvents(progressOf(stack.serviceUrl, 'slow-whole'))
  t.equal(none.status, 401)
  t.equal(none.body.code, 'NOT_AUTHENTICATED')
  const other = await readEvents(progressOf(stack.serviceUrl, 'slow-whole'), {
    headers: { authorization: `token ${users.maintainer.token}` },
  })
  t.equal(other.status, 404, "another user's server is not found")
  t.same(other.body, {
    messages: { error: 'You have no server named slow-whole.' },
    code: 'SERVER_NOT_FOUND',
  })
  for (const name of ['x'.repeat(300), 'x'.repeat(256)]) {
    const bad = await readEvents(progressOf(stack.serviceUrl, name), { headers: token })
    const server = await developer('GET', `servers/${name}`)
    t.ok(bad.status >= 400 && bad.status < 500, `a ${name.length}-character name: ${bad.status}`)
    t.same([bad.status, bad.body], [server.status, server.body], 'answered as GET servers/{name} answers')
  }
})

t.test('100 watchers of one start cost the hub one progress stream; leaving costs nothing', async (t) => {
  // Long enough that a loaded machine still has every watcher join before the start ends.
  await slowStart('slow-crowd', { jhub_test_delay: 15 })
  // Of this server: the copy may ask about other servers' stops meanwhile (how they ended).
  const crowdStreams = () => hubProxy.requests.filter((r) => r.includes('/slow-crowd/progress'))
  const before = crowdStreams().length
  const streams = Array.from({ length: 100 }, () =>
    readEvents(progressOf(replicaUrl, 'slow-crowd'), {
      headers: token,
      until: (events, comments) => events.length >= 1 && comments.includes('keep-alive'),
    }),
  )
  const results = await Promise.all(streams)
  t.ok(
    results.every((r) => r.status === 200 && r.events[0]?.data.step === 'requested'),
    'every watcher got the first step',
  )
  t.ok(
    results.every((r) => r.comments.includes('keep-alive')),
    'and keep-alive comments meanwhile',
  )
  const opened = crowdStreams().length - before
  t.equal(opened, 1, 'one hub progress stream for 100 watchers')
  t.comment(`fan-out: 100 watchers, ${opened} hub progress stream(s)`)
  // Every watcher has gone: the hub's stream is closed too.
  const left = Date.now()
  await eventually(async () => (hubProxy.open === 0 ? true : undefined), 10_000, 'the hub stream to close')
  t.comment(`the hub stream closed within ${Date.now() - left} ms of the last watcher leaving`)
  t.equal(hubProxy.open, 0, 'no hub stream left open')

  const late = await readEvents(progressOf(replicaUrl, 'slow-crowd'), { headers: token })
  t.equal(late.events.at(-1)?.data.step, 'ready', 'a new watcher still follows the start to its end')
})

t.test('the metrics count the progress streams open', async (t) => {
  await slowStart('slow-gauge', { jhub_test_delay: 6 })
  const gauge = async () => {
    const text = await (await fetch(stack.metricsUrl as string)).text()
    return Number(/^renku_notebooks_progress_streams_open (\d+)$/m.exec(text)?.[1])
  }
  const watchers = Array.from({ length: 3 }, () => new AbortController())
  const responses = await Promise.all(
    watchers.map((w) =>
      fetch(progressOf(stack.serviceUrl, 'slow-gauge'), { headers: token, signal: w.signal }),
    ),
  )
  t.ok(
    responses.every((r) => r.status === 200),
    'three watchers',
  )
  t.equal(await gauge(), 3, 'three streams open')
  for (const w of watchers) w.abort()
  t.equal(
    await eventually(async () => ((await gauge()) === 0 ? 0 : undefined), 5000),
    0,
    'none once they left',
  )
})
