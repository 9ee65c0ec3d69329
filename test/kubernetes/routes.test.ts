/**
 * The whole service with Kubernetes configured (the API stand-in) over a real JupyterHub: the
 * server object takes its status and resources from the server's pod, only ever the caller's,
 * and readiness checks Kubernetes.
 */

import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import {
  fixtureFor,
  type LaunchStage,
  launchStage,
  type PodFixtureName,
} from '../../dev/fixtures/kubernetes/index.js'
import { eventually, startStack } from '../../dev/stack.js'
import { startKubernetes } from '../../dev/stand-ins/kubernetes.js'
import type { ServerObject } from '../../schemas/servers.js'
import { build } from '../helper.js'
import { readEvents, type SseEvent } from '../support/sse.js'

const kube = await startKubernetes({ namespace: 'renku' })
t.teardown(() => kube.close())
const stack = await startStack({
  // No log files: logs come from Kubernetes.
  serviceEnv: {
    KUBECONFIG: kube.kubeconfigPath,
    KUBERNETES_NAMESPACE: kube.namespace,
    NOTEBOOKS_LOGS_DIR: '',
  },
})
t.teardown(() => stack.stop())
const { world, users } = stack
const developer = stack.as(users.developer)
const maintainer = stack.as(users.maintainer)

/** Puts a pod in the given state for the user's server, replacing any earlier one. */
function podState(state: PodFixtureName, user: string, server: string): string {
  const { pod, events } = fixtureFor(state, user, server)
  kube.setPods([pod])
  kube.setEvents(events)
  return pod.metadata.name
}

async function statusOnce(
  name: string,
  test: (server: ServerObject) => boolean,
  timeoutMs = 10_000,
): Promise<ServerObject> {
  return eventually(
    async () => {
      const { status, body } = await developer<ServerObject>('GET', `servers/${name}`)
      return status === 200 && test(body) ? body : undefined
    },
    timeoutMs,
    `the server object of ${name}`,
  )
}

const launched = await developer<ServerObject>('POST', 'servers', {
  namespace: 'demo-group',
  project: 'demo-project',
  commit_sha: world.commits.demo.masterFirst,
})
const name = launched.body.name
// The local spawner starts a real notebook server: that takes a while on a busy machine.
await statusOnce(name, (server) => server.status.state === 'running', 90_000)

t.test("the server object follows the server's pod", async (t) => {
  podState('image-pull-backoff', 'developer', name)
  const failed = await statusOnce(name, (server) => server.status.state === 'failed')
  t.match(failed.status, {
    state: 'failed',
    ready: false,
    phase: 'Pending',
    step: 'ContainersReady',
    reason: 'ImagePullBackOff',
    message:
      'The image registry.example.com/science/broken-image:9c0d1e2 could not be pulled: it does not exist.',
  })

  podState('pending-unschedulable', 'developer', name)
  const pending = await statusOnce(
    name,
    (server) => server.status.phase === 'Pending' && server.status.step === 'PodScheduled',
  )
  t.match(pending.status, {
    state: 'starting',
    ready: false,
    reason: 'Unschedulable',
    message: /^The cluster does not have enough free CPU and GPUs/,
  })
  t.same(pending.resources, { cpu: '4', memory: '8G', storage: '10G', gpu: '1' }, 'what the pod asked for')

  podState('crash-looping', 'developer', name)
  const crashing = await statusOnce(name, (server) => server.status.reason === 'CrashLoopBackOff')
  t.match(crashing.status, { state: 'failed', message: /keeps crashing/ })

  podState('terminating', 'developer', name)
  t.match((await statusOnce(name, (server) => server.status.state === 'stopping')).status, {
    ready: false,
    message: 'The server is shutting down.',
  })

  podState('running-ready', 'developer', name)
  const running = await statusOnce(name, (server) => server.status.state === 'running')
  t.match(running.status, { ready: true, phase: 'Running', step: 'Ready' })
  t.same(running.resources, { cpu: '0.5', memory: '1G', storage: '1G', gpu: '0' })
})

t.test("another user's pod never shows on the caller's server", async (t) => {
  // The maintainer's pod claims the developer's server name.
  podState('crash-looping', 'maintainer', name)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const { body } = await developer<ServerObject>('GET', `servers/${name}`)
  t.equal(body.status.state, 'running', "the hub's word: no pod of the developer")
  t.equal(body.status.phase, undefined)
  t.equal((await maintainer('GET', `servers/${name}`)).status, 404, 'and the maintainer has no such server')
})

t.test('readiness checks Kubernetes', async (t) => {
  const ready = await stack.as(null)('GET', 'ready')
  t.equal(ready.status, 200)
  t.match(ready.body, { ok: true, checks: { kubernetes: true } })
  kube.setForbidden(true)
  t.teardown(() => kube.setForbidden(false))
  const failing = await eventually(
    async () => {
      const answer = await stack.as(null)('GET', 'ready')
      return answer.status === 503 ? answer : undefined
    },
    20_000,
    'readiness to see Kubernetes fail',
  )
  t.match(failing.body, { ok: false, checks: { kubernetes: false } })
})

t.test("logs are the notebook container's, from Kubernetes", async (t) => {
  const podName = podState('running-ready', 'developer', name)
  kube.setLog(podName, 'first\nsecond\nthird\n')
  const tail = await developer<string[]>('GET', `logs/${name}?max_lines=2`)
  t.equal(tail.status, 200)
  t.same(tail.body, ['second', 'third'], 'the last lines, oldest first')
  const asked = kube.requests.filter((r) => r.path.endsWith(`/pods/${podName}/log`)).at(-1)
  t.equal(asked?.query.container, 'notebook')
  t.equal(asked?.query.tailLines, '2')
  t.same((await developer<string[]>('GET', `logs/${name}?max_lines=0`)).body, ['first', 'second', 'third'])
  t.equal(
    kube.requests.filter((r) => r.path.endsWith('/log')).at(-1)?.query.tailLines,
    undefined,
    '0: no tailLines',
  )

  podState('image-pull-backoff', 'developer', name)
  const waiting = await developer<string[]>('GET', `logs/${name}`)
  t.equal(waiting.status, 200, 'a container that has not started is not an error')
  t.equal(waiting.body.length, 1)
  t.match(waiting.body[0], /has not started yet/)
  t.equal((await maintainer('GET', `logs/${name}`)).status, 404, 'another user cannot read them')
})

t.test("the progress stream follows the pod's launch, then the hub's ready", async (t) => {
  const watched = 'watched-launch'
  // Held pending by the local spawner's delay while the pod walks through its stages.
  stack.hub.admin('POST', `/users/developer/servers/${watched}`, { jhub_test_delay: 20 }).catch(() => {})
  await eventually(async () =>
    (await developer('GET', `servers/${watched}`)).status === 200 ? true : undefined,
  )
  const stage = (name: LaunchStage) => {
    const { pod, events } = launchStage(name, 'developer', watched)
    kube.setPods([pod])
    kube.setEvents(events)
  }
  stage('unschedulable')
  await statusOnce(watched, (server) => server.status.step === 'PodScheduled')
  let seen: SseEvent[] = []
  const stream = readEvents(`${stack.serviceUrl}servers/${watched}/progress`, {
    headers: { authorization: `token ${users.developer.token}` },
    until: (events) => {
      seen = events
      return false
    },
  })
  const reach = (step: string) =>
    eventually(async () => seen.find((event) => event.data.step === step), 15_000, `the ${step} step`)
  await reach('requested')
  for (const [name, step] of [
    ['scheduled', 'scheduled'],
    ['pulling', 'pulling'],
    ['cloning', 'cloning'],
    ['starting', 'starting'],
  ] as const) {
    stage(name)
    await reach(step)
  }
  stage('ready')
  const { events, ended } = await stream
  t.equal(ended, true, 'the stream ends with the start')
  t.same(
    events.map((event) => event.data.step),
    ['requested', 'scheduled', 'pulling', 'cloning', 'starting', 'ready'],
  )
  t.same(
    events.map((event) => event.data.message),
    [
      'JupyterHub accepted the start. The cluster does not have enough free CPU and GPUs for the server right now; it starts as soon as a node has room (0/3 nodes are available: 1 Insufficient cpu, 3 Insufficient nvidia.com/gpu).',
      'The server was given a node to run on (worker-2).',
      'The image renku/git-clone:0.8.2 is being pulled.',
      'The repository is being cloned.',
      'The notebook server is starting.',
      'Your server is ready.',
    ],
  )
  t.equal(events.at(-1)?.data.url, `${stack.hub.publicUrl}/user/developer/${watched}/`)
})

t.test('the progress stream ends with the cause when the image cannot be pulled', async (t) => {
  const broken = 'broken-image'
  // Its answer may never come: the hub is stopped at the end, still holding it.
  stack.hub.admin('POST', `/users/developer/servers/${broken}`, { jhub_test_delay: 60 }).catch(() => {})
  await eventually(async () =>
    (await developer('GET', `servers/${broken}`)).status === 200 ? true : undefined,
  )
  const { pod, events } = launchStage('pull-failed', 'developer', broken)
  kube.setPods([pod])
  kube.setEvents(events)
  const stream = await readEvents(`${stack.serviceUrl}servers/${broken}/progress`, {
    headers: { authorization: `token ${users.developer.token}` },
  })
  t.equal(stream.ended, true, 'ended, though the hub still waits')
  const last = stream.events.at(-1)?.data
  t.match(last, {
    step: 'failed',
    failed: true,
    progress: 100,
    message:
      'The image registry.example.com/science/broken-image:9c0d1e2 could not be pulled: it does not exist.',
  })
  t.same(
    stream.events.map((event) => event.data.step),
    ['requested', 'scheduled', 'pulling', 'cloning', 'failed'],
  )
})

t.test('100 watchers of one start: one pod look-up a second, none once they leave', async (t) => {
  const crowded = 'crowded-launch'
  stack.hub.admin('POST', `/users/developer/servers/${crowded}`, { jhub_test_delay: 60 }).catch(() => {})
  await eventually(async () =>
    (await developer('GET', `servers/${crowded}`)).status === 200 ? true : undefined,
  )
  const { pod, events } = launchStage('cloning', 'developer', crowded)
  kube.setPods([pod])
  kube.setEvents(events)
  const watches = kube.openWatches()
  const leave = new AbortController()
  const seen: SseEvent[][] = Array.from({ length: 100 }, () => [])
  const streams = seen.map((_, i) =>
    readEvents(`${stack.serviceUrl}servers/${crowded}/progress`, {
      headers: { authorization: `token ${users.developer.token}` },
      signal: leave.signal,
      until: (got) => {
        seen[i] = got
        return false
      },
    }),
  )
  await eventually(
    async () => (seen.every((got) => got.some((e) => e.data.step === 'cloning')) ? true : undefined),
    20_000,
    'every watcher to see cloning',
  )
  const eventLists = () => kube.requests.filter((r) => r.path.endsWith('/events')).length
  const from = eventLists()
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const perSecond = (eventLists() - from) / 3
  t.ok(perSecond <= 1.5, `about one event list a second for 100 watchers (${perSecond.toFixed(1)})`)
  t.comment(
    `fan-out with Kubernetes: 100 watchers, ${perSecond.toFixed(1)} event lists/s, pods from the copy`,
  )
  t.equal(kube.openWatches(), watches, 'no watch of its own: the pod copy is shared')

  leave.abort()
  await Promise.all(streams)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const afterLeaving = eventLists()
  await new Promise((resolve) => setTimeout(resolve, 2000))
  t.equal(eventLists(), afterLeaving, 'once they left, no more look-ups')
})

t.test('a server the hub cannot stop yet: 409, or with force=true its pod is deleted', async (t) => {
  // The local spawner's test delay holds the start open, so the hub keeps the server pending.
  const held = 'held-open'
  // Its answer may never come: the hub is stopped at the end, still holding it.
  stack.hub.admin('POST', `/users/developer/servers/${held}`, { jhub_test_delay: 20 }).catch(() => {})
  await eventually(async () =>
    (await developer('GET', `servers/${held}`)).status === 200 ? true : undefined,
  )
  const podName = podState('pending-unschedulable', 'developer', held)
  const pending = await statusOnce(held, (server) => server.state.pod_name === podName)
  t.equal(pending.status.state, 'starting')

  const refused = await developer('DELETE', `servers/${held}`)
  t.equal(refused.status, 409)
  t.equal(refused.body.code, 'SERVER_BUSY')
  t.equal(kube.deletions.length, 0, 'no pod deleted without force')

  const forced = await developer('DELETE', `servers/${held}?force=true`)
  t.equal(forced.status, 202, 'accepted: the pod is being deleted')
  t.same(kube.deletions, [{ name: podName, gracePeriodSeconds: 30 }])
})

t.test('Kubernetes unreachable: logs are 503 naming it, the rest works from the hub', async (t) => {
  const kubeconfig = path.join(tmpdir(), `kubeconfig-unreachable-${process.pid}.yaml`)
  await writeFile(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: c, cluster: {server: "http://127.0.0.1:1", insecure-skip-tls-verify: true}}]',
      'users: [{name: u, user: {token: t}}]',
      'contexts: [{name: x, context: {cluster: c, user: u, namespace: renku}}]',
      'current-context: x',
    ].join('\n'),
  )
  const app = await build(t, {
    JUPYTERHUB_API_URL: stack.hub.apiUrl,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    GITLAB_URL: stack.gitlab.url,
    KUBECONFIG: kubeconfig,
    NOTEBOOKS_UPSTREAM_TIMEOUT: '2',
  })
  const headers = { authorization: `token ${users.developer.token}` }
  const list = await app.inject({ url: '/services/notebooks/servers', headers })
  t.equal(list.statusCode, 200, 'servers are still listed')
  t.equal(list.json().servers[name].status.state, 'running', "from the hub's data")
  const logs = await app.inject({ url: `/services/notebooks/logs/${name}`, headers })
  t.equal(logs.statusCode, 503)
  t.same(logs.json(), { messages: { error: 'Kubernetes cannot be reached.' }, code: 'UPSTREAM_UNAVAILABLE' })
})
