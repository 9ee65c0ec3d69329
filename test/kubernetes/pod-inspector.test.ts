/**
 * `fastify.kubernetes` against the Kubernetes API stand-in: what a user sees of each pod state,
 * how many calls a lookup costs, isolation between users, logs, deletion, and failures.
 */
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import t from 'tap'
import {
  loadPodFixture,
  type PodFixtureName,
  podFixtureNames,
  serverNameOf,
} from '../../dev/fixtures/kubernetes/index.js'
import { type KubernetesStandIn, startKubernetes } from '../../dev/stand-ins/kubernetes.js'
import { type Config, loadConfig } from '../../lib/core/config.js'
import type { UpstreamError } from '../../lib/core/errors.js'
import type { KubernetesPods } from '../../lib/kubernetes/client.js'
import { escapeUsername, isLabelValue } from '../../lib/kubernetes/labels.js'
import type { PodView } from '../../lib/servers/pods.js'
import configPlugin from '../../plugins/config.js'
import kubernetesPlugin from '../../plugins/kubernetes.js'
import metricsPlugin from '../../plugins/metrics.js'

const fixtures = Object.fromEntries(podFixtureNames.map((name) => [name, loadPodFixture(name)])) as Record<
  PodFixtureName,
  ReturnType<typeof loadPodFixture>
>
const server = (name: PodFixtureName) => serverNameOf(fixtures[name].pod)
const podName = (name: PodFixtureName) => fixtures[name].pod.metadata.name

function config(env: Record<string, string> = {}): Config {
  return loadConfig({
    JUPYTERHUB_API_URL: 'http://127.0.0.1:1/hub/api',
    JUPYTERHUB_API_TOKEN: 'x',
    ...env,
  })
}

/** A bare Fastify with the config and kubernetes plugins; its log lines are collected. */
async function build(
  t: { teardown(fn: () => unknown): void },
  cfg: Config,
): Promise<{ app: FastifyInstance; logs: string[] }> {
  const logs: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logs.push(String(chunk))
      done()
    },
  })
  const app = Fastify({ logger: { level: 'info', stream }, pluginTimeout: 60_000 })
  await app.register(configPlugin, { config: cfg })
  await app.register(metricsPlugin)
  await app.register(kubernetesPlugin)
  await app.ready()
  t.teardown(() => app.close())
  return { app, logs }
}

function pods(app: FastifyInstance): KubernetesPods {
  if (!app.kubernetes) throw new Error('Kubernetes is off')
  return app.kubernetes as KubernetesPods
}

async function until(test: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await test()) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return false
}

async function rejection(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise
  } catch (error) {
    return error as UpstreamError
  }
  throw new Error('expected a rejection')
}

let kube: KubernetesStandIn
t.before(async () => {
  kube = await startKubernetes({
    namespace: 'renku',
    pods: podFixtureNames.map((name) => fixtures[name].pod),
    events: podFixtureNames.flatMap((name) => fixtures[name].events),
    logs: Object.fromEntries(podFixtureNames.map((name) => [podName(name), fixtures[name].log])),
  })
})
t.teardown(() => kube.close())

const env = () => ({ KUBECONFIG: kube.kubeconfigPath, KUBERNETES_NAMESPACE: 'renku' })
const since = (mark: number) => kube.requests.slice(mark).filter((r) => !r.query.watch)

t.test('without KUBECONFIG or a cluster, Kubernetes is off and says so', async (t) => {
  const { app, logs } = await build(t, config())
  t.equal(app.kubernetes, null)
  t.match(logs.join(''), /Kubernetes is not configured.*off/)
})

t.test(
  'namespace: KUBERNETES_NAMESPACE, else the kubeconfig context, and a bad KUBECONFIG stops start-up',
  async (t) => {
    const other = await kube.writeKubeconfig(kube.token, 'science')
    t.equal(pods((await build(t, config({ KUBECONFIG: other }))).app).namespace, 'science')
    t.equal(
      pods((await build(t, config({ KUBECONFIG: other, KUBERNETES_NAMESPACE: 'renku' }))).app).namespace,
      'renku',
    )
    const app = Fastify({ pluginTimeout: 60_000 })
    t.teardown(() => app.close())
    await app.register(configPlugin, { config: config({ KUBECONFIG: '/nonexistent/kubeconfig' }) })
    await app.register(metricsPlugin)
    await t.rejects(
      async () => {
        await app.register(kubernetesPlugin)
      },
      { name: 'ConfigError', message: /^KUBECONFIG names a file that cannot be read as a kubeconfig/ },
    )
  },
)

t.test('each pod state, as the user sees it', async (t) => {
  const { app } = await build(t, config(env()))
  await pods(app).reflector?.whenSynced()
  // One server at a time: the events call is then by pod name and includes Normal events.
  const view = async (name: PodFixtureName): Promise<PodView | undefined> =>
    (await pods(app).podsForUser('alice', [{ name: server(name) }])).get(server(name))

  t.match(await view('pending-unschedulable'), {
    name: podName('pending-unschedulable'),
    phase: 'Pending',
    ready: false,
    terminating: false,
    failed: false,
    step: 'PodScheduled',
    reason: 'Unschedulable',
    message:
      'The cluster does not have enough free CPU and GPUs for the server right now; it starts as soon as a node has room (0/3 nodes are available: 1 Insufficient cpu, 3 Insufficient nvidia.com/gpu).',
    resources: { cpu: '4', memory: '8G', storage: '10G', gpu: '1' },
  })
  t.match(await view('image-pull-backoff'), {
    phase: 'Pending',
    ready: false,
    failed: true,
    step: 'ContainersReady',
    reason: 'ImagePullBackOff',
    message:
      'The image registry.example.com/science/broken-image:9c0d1e2 could not be pulled: it does not exist.',
  })
  t.match(await view('container-creating'), {
    phase: 'Pending',
    ready: false,
    failed: false,
    step: 'ContainersReady',
    reason: 'PodInitializing',
    message: 'The image registry.example.com/science/big-image:3a4b5c6 is being pulled.',
  })
  t.match(await view('running-not-ready'), {
    phase: 'Running',
    ready: false,
    failed: false,
    step: 'ContainersReady',
    reason: 'ContainersNotReady',
    message: /^The server is running but not ready yet\. Kubernetes reports: Readiness probe failed: /,
    resources: { cpu: '1', memory: '2G', storage: '1G', gpu: '0' },
  })
  const ready = await view('running-ready')
  t.match(ready, {
    phase: 'Running',
    ready: true,
    terminating: false,
    failed: false,
    step: 'Ready',
    resources: { cpu: '0.5', memory: '1G', storage: '1G', gpu: '0' },
    annotations: {
      'renku.io/namespace': 'science',
      'renku.io/projectName': 'my-project',
      'renku.io/commit-sha': fixtures['running-ready'].pod.metadata.annotations?.['renku.io/commit-sha'],
      'renku.io/default_image_used': 'False',
      'hub.jupyter.org/servername': 'my-project-1a2b3c4d',
    },
    labels: { 'renku.io/username': 'alice', component: 'singleuser-server' },
  })
  t.equal(ready?.message, undefined, 'a ready server needs no explanation')
  t.match(await view('terminating'), {
    phase: 'Running',
    ready: false,
    terminating: true,
    failed: false,
    step: 'Terminating',
    reason: 'Terminating',
    message: 'The server is shutting down.',
  })
  t.match(await view('crash-looping'), {
    phase: 'Running',
    ready: false,
    failed: true,
    step: 'ContainersReady',
    reason: 'CrashLoopBackOff',
    message:
      'The notebook container keeps crashing: it exited with code 1 and has been restarted 5 times. Its logs may say why.',
  })
})

t.test('call pattern: from the watched copy no pod call per lookup; at most one events call', async (t) => {
  const { app } = await build(t, config(env()))
  const k8s = pods(app)
  await k8s.reflector?.whenSynced()
  const names = Array.from({ length: 10 }, (_, i) => `notebook-${i}-0a1b2c3d`)
  kube.seedServers('carol', names)
  t.ok(
    await until(
      () =>
        k8s.reflector?.list().filter((p) => p.metadata?.labels?.['renku.io/username'] === 'carol').length ===
        10,
    ),
  )

  let mark = kube.requests.length
  const views = await k8s.podsForUser(
    'carol',
    names.map((name) => ({ name })),
  )
  t.equal(views.size, 10)
  t.ok([...views.values()].every((v) => v.ready))
  t.same(since(mark), [], 'ten ready servers cost no call')

  mark = kube.requests.length
  const all = await k8s.podsForUser(
    'alice',
    podFixtureNames.map((name) => ({ name: server(name) })),
  )
  t.equal(all.size, podFixtureNames.length)
  t.match(since(mark), [
    {
      method: 'GET',
      path: '/api/v1/namespaces/renku/events',
      query: { fieldSelector: 'involvedObject.kind=Pod,type=Warning' },
    },
  ])
  t.equal(since(mark).length, 1, 'several pods starting: one events call for all')
  const metrics = await app.metrics.registry.metrics()
  t.match(
    metrics,
    /renku_notebooks_upstream_request_duration_seconds_count\{upstream="kubernetes",operation="GET \/api\/v1\/namespaces\/\{namespace\}\/events",outcome="ok"\} 1\n/,
    'the events call in the metrics, by operation pattern',
  )
  t.match(
    metrics,
    /operation="GET \/api\/v1\/namespaces\/\{namespace\}\/pods",outcome="ok"\} 1\n/,
    "the watched copy's one list",
  )
  t.equal(all.get(server('image-pull-backoff'))?.failed, true, 'Warning events suffice for a pull failure')

  mark = kube.requests.length
  t.equal((await k8s.podsForUser('alice', [])).size, 0)
  t.same(since(mark), [], 'no servers, no call')

  t.test('the watch keeps the copy current', async (t) => {
    const pod = loadPodFixture('container-creating').pod
    pod.status = loadPodFixture('running-ready').pod.status
    kube.upsertPod(pod)
    t.ok(
      await until(
        async () =>
          (await k8s.podsForUser('alice', [{ name: server('container-creating') }])).get(
            server('container-creating'),
          )?.ready === true,
      ),
    )
    kube.upsertPod(fixtures['container-creating'].pod)
  })
})

t.test('call pattern without the copy: one pod list for N servers', async (t) => {
  const { createKubernetesPods } = await import('../../lib/kubernetes/client.js')
  const k8s = createKubernetesPods({ kubeconfig: kube.kubeconfigPath, cache: false })
  t.teardown(() => k8s.close())
  const names = Array.from({ length: 10 }, (_, i) => `report-${i}-4e5f6a7b`)
  kube.seedServers('dora@example.com', names)

  let mark = kube.requests.length
  const views = await k8s.podsForUser(
    'dora@example.com',
    names.map((name) => ({ name })),
  )
  t.equal(views.size, 10)
  t.same(since(mark), [
    {
      method: 'GET',
      path: '/api/v1/namespaces/renku/pods',
      query: { labelSelector: 'renku.io/username=dora-40example-2ecom' },
    },
  ])

  mark = kube.requests.length
  const one = await k8s.podsForUser('alice', [{ name: server('crash-looping') }])
  t.equal(one.get(server('crash-looping'))?.reason, 'CrashLoopBackOff')
  t.match(since(mark), [
    { path: '/api/v1/namespaces/renku/pods' },
    {
      path: '/api/v1/namespaces/renku/events',
      query: { fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${podName('crash-looping')}` },
    },
  ])
  t.equal(since(mark).length, 2)

  t.test('user names: escaped as the spawner does; an impossible label costs no call', async (t) => {
    t.equal(escapeUsername('alice@example.com'), 'alice-40example-2ecom')
    t.equal(escapeUsername('jean-luc.picard'), 'jean-2dluc-2epicard')
    t.equal(escapeUsername('Ünal'), '-c3-9cnal')
    t.notOk(isLabelValue(escapeUsername('Ünal')))
    const before = kube.requests.length
    t.equal((await k8s.podsForUser('Ünal', [{ name: 'x' }])).size, 0)
    t.equal(kube.requests.length, before)
  })
})

t.test("isolation: another user's pod is never returned, even when named in the hub's state", async (t) => {
  const { app } = await build(t, config(env()))
  const k8s = pods(app)
  await k8s.reflector?.whenSynced()
  const [bobPod = ''] = kube.seedServers('bob', ['secret-project-9f8e7d6c'])
  t.ok(await until(() => k8s.reflector?.list().some((p) => p.metadata?.name === bobPod) ?? false))

  const stolen = await k8s.podsForUser('alice', [{ name: 'secret-project-9f8e7d6c', podName: bobPod }])
  t.equal(stolen.size, 0)
  const mixed = await k8s.podsForUser('alice', [{ name: server('running-ready'), podName: bobPod }])
  t.equal(
    mixed.get(server('running-ready'))?.name,
    podName('running-ready'),
    "alice's own pod, found by annotation",
  )
  // Escaping lower-cases: `Alice` shares alice's label, but not her unescaped name.
  t.equal((await k8s.podsForUser('Alice', [{ name: server('running-ready') }])).size, 0)

  const mark = kube.requests.length
  t.same(
    await k8s.readLogs({
      username: 'alice',
      serverName: 'secret-project-9f8e7d6c',
      podName: bobPod,
      maxLines: 10,
    }),
    ['The server secret-project-9f8e7d6c has no pod yet, or it has already stopped.'],
  )
  t.notOk(
    kube.requests.slice(mark).some((r) => r.path.includes(bobPod)),
    "bob's logs are never asked for",
  )
})

t.test('logs', async (t) => {
  const { app } = await build(t, config(env()))
  const k8s = pods(app)
  await k8s.reflector?.whenSynced()
  const read = (name: PodFixtureName, maxLines: number) =>
    k8s.readLogs({ username: 'alice', serverName: server(name), podName: podName(name), maxLines })
  const lines = fixtures['running-ready'].log.split('\n').slice(0, -1)

  let mark = kube.requests.length
  t.same(await read('running-ready', 2), lines.slice(-2), 'the last lines, oldest first')
  t.match(since(mark), [
    {
      method: 'GET',
      path: `/api/v1/namespaces/renku/pods/${podName('running-ready')}/log`,
      query: { container: 'notebook', tailLines: '2', follow: 'false' },
    },
  ])
  mark = kube.requests.length
  t.same(await read('running-ready', 0), lines, '0: all lines')
  t.notOk('tailLines' in (since(mark)[0]?.query ?? {}))
  t.same(await read('running-ready', 1000), lines)

  t.same(await read('image-pull-backoff', 250), [
    'The notebook container has not started yet (trying and failing to pull image), so there are no logs.',
  ])
  t.same(await read('container-creating', 250), [
    'The notebook container has not started yet (PodInitializing), so there are no logs.',
  ])
  t.same(await read('pending-unschedulable', 250), [], 'unscheduled: the API answers 200 and nothing')
  t.same(
    await read('crash-looping', 250),
    fixtures['crash-looping'].log.split('\n').slice(0, -1),
    'the last run',
  )

  mark = kube.requests.length
  t.same(await k8s.readLogs({ username: 'alice', serverName: 'never-started-00000000', maxLines: 250 }), [
    'The server never-started-00000000 has no pod yet, or it has already stopped.',
  ])
  t.same(since(mark), [], 'no pod, no log call')

  // The pod goes between the lookup (from the copy, at once) and the log read: a 404.
  const gone = loadPodFixture('running-ready').pod
  gone.metadata.name = 'jupyter-alice--gone-2dproject-2d00000000'
  gone.metadata.annotations = {
    ...gone.metadata.annotations,
    'hub.jupyter.org/servername': 'gone-project-00000000',
  }
  kube.upsertPod(gone)
  t.ok(await until(() => k8s.reflector?.list().some((p) => p.metadata?.name === gone.metadata.name) ?? false))
  kube.removePod(gone.metadata.name)
  t.same(await k8s.readLogs({ username: 'alice', serverName: 'gone-project-00000000', maxLines: 5 }), [
    'The server gone-project-00000000 has no pod yet, or it has already stopped.',
  ])
})

t.test('deletePod: 30 s grace period, the pod terminates; a missing pod counts as done', async (t) => {
  const { app } = await build(t, config(env()))
  const k8s = pods(app)
  await k8s.reflector?.whenSynced()
  const [name = ''] = kube.seedServers('erin', ['doomed-project-1b2c3d4e'])
  await k8s.deletePod(name)
  t.same(kube.deletions.at(-1), { name, gracePeriodSeconds: 30 })
  t.ok(kube.pod(name)?.metadata.deletionTimestamp)
  t.ok(
    await until(
      async () =>
        (await k8s.podsForUser('erin', [{ name: 'doomed-project-1b2c3d4e' }])).get('doomed-project-1b2c3d4e')
          ?.terminating === true,
    ),
    'the watch brings the deletion timestamp',
  )
  kube.removePod(name)
  await t.resolves(k8s.deletePod(name))
  await t.resolves(k8s.ping())
  t.match(kube.requests.at(-1), {
    method: 'GET',
    path: '/api/v1/namespaces/renku/pods',
    query: { limit: '1' },
  })
})

t.test(
  'failures name Kubernetes: unreachable 503, rejected token 502, forbidden 502, slow 504',
  async (t) => {
    // A port nothing listens on: a stand-in's, once closed.
    const closed = await startKubernetes()
    await closed.close()
    const dir = t.testdir({})
    const kubeconfig = path.join(dir, 'kubeconfig')
    await writeFile(
      kubeconfig,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: closed.url, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token: 'whatever' } }],
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'u', namespace: 'renku' } }],
        'current-context': 'c',
      }),
    )

    const down = pods((await build(t, config({ KUBECONFIG: kubeconfig }))).app)
    for (const call of [
      down.podsForUser('alice', [{ name: 'x' }]),
      down.readLogs({ username: 'alice', serverName: 'x', maxLines: 1 }),
      down.ping(),
      down.deletePod('x'),
    ]) {
      t.match(await rejection(call), {
        statusCode: 503,
        code: 'UPSTREAM_UNAVAILABLE',
        upstream: 'Kubernetes',
        message: 'Kubernetes cannot be reached.',
      })
    }

    const badToken = 'not-the-token-0123456789'
    const rejected = pods((await build(t, config({ KUBECONFIG: await kube.writeKubeconfig(badToken) }))).app)
    const unauthorized = await rejection(rejected.podsForUser('alice', [{ name: server('running-ready') }]))
    t.match(unauthorized, {
      statusCode: 502,
      code: 'UPSTREAM_BAD_RESPONSE',
      message: 'Kubernetes gave an unexpected answer.',
    })
    t.match(unauthorized.detail, /HTTP 401/)
    t.notMatch(`${unauthorized.message} ${unauthorized.detail}`, badToken, 'no token in the error')
    t.match(await rejection(rejected.readLogs({ username: 'alice', serverName: 'x', maxLines: 1 })), {
      statusCode: 502,
    })

    const allowed = pods((await build(t, config(env()))).app)
    kube.setForbidden(true)
    t.teardown(() => kube.setForbidden(false))
    const forbidden = await rejection(allowed.deletePod(podName('running-ready')))
    t.match(forbidden, { statusCode: 502, upstream: 'Kubernetes' })
    t.match(forbidden.detail, /HTTP 403 \(pods "jupyter-alice--my-2dproject-2d1a2b3c4d" is forbidden/)
    kube.setForbidden(false)

    const slow = pods((await build(t, config({ ...env(), NOTEBOOKS_UPSTREAM_TIMEOUT: '1' }))).app)
    kube.setDelay(1500)
    t.teardown(() => kube.setDelay(0))
    t.match(await rejection(slow.ping()), {
      statusCode: 504,
      code: 'UPSTREAM_TIMEOUT',
      message: 'Kubernetes did not answer in time.',
    })
    kube.setDelay(0)
  },
)

t.test('an expired watch (410 Gone): the copy lists again and stays current', async (t) => {
  const { app } = await build(t, config(env()))
  const k8s = pods(app)
  await k8s.reflector?.whenSynced()
  const mark = kube.requests.length
  kube.expireWatches()
  const [name = ''] = kube.seedServers('frank', ['late-project-5d6e7f80'])
  t.ok(
    await until(async () => (await k8s.podsForUser('frank', [{ name: 'late-project-5d6e7f80' }])).size === 1),
    'a pod created after the expiry is seen',
  )
  t.ok(await until(() => k8s.reflector?.synced === true))
  const after = kube.requests.slice(mark).filter((r) => r.path === '/api/v1/namespaces/renku/pods')
  // Meanwhile lookups may list the user's pods (`renku.io/username=frank`): the copy is not current.
  const relist = after.findIndex((r) => r.query.labelSelector === 'renku.io/username' && !r.query.watch)
  t.ok(relist >= 0, 'a fresh list of all notebook pods')
  t.ok(
    after.slice(relist).some((r) => r.query.watch === 'true' && r.query.resourceVersion),
    'then a watch from its resourceVersion',
  )
  kube.removePod(name)
})

t.test('closing the app ends the watch', async (t) => {
  const { app } = await build(t, config(env()))
  await pods(app).reflector?.whenSynced()
  t.ok(kube.openWatches() > 0)
  const before = kube.openWatches()
  await app.close()
  t.ok(await until(() => kube.openWatches() < before))
})

t.test('the stand-in answers as the API server does', async (t) => {
  const api = (path: string, token = kube.token) =>
    fetch(`${kube.url}/api/v1/namespaces/renku${path}`, { headers: { authorization: `Bearer ${token}` } })

  const unauthorized = await api('/pods', 'wrong')
  t.equal(unauthorized.status, 401)
  t.same(await unauthorized.json(), {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'Unauthorized',
    reason: 'Unauthorized',
    code: 401,
  })

  const list = (await (
    await api('/pods?labelSelector=renku.io/username%3Dalice,component%3Dsingleuser-server')
  ).json()) as {
    kind: string
    metadata: { resourceVersion: string }
    items: unknown[]
  }
  t.equal(list.kind, 'PodList')
  t.equal(list.items.length, podFixtureNames.length, "alice's pods only")
  t.match(list.metadata.resourceVersion, /^\d+$/)

  const badField = await api('/events?fieldSelector=involvedObject.color%3Dblue')
  t.equal(badField.status, 400)
  t.match(await badField.json(), {
    reason: 'BadRequest',
    message: 'field label not supported: involvedObject.color',
  })

  const waiting = await api(
    `/pods/${podName('image-pull-backoff')}/log?container=notebook&follow=false&pretty=false&previous=false&timestamps=false`,
  )
  t.equal(waiting.status, 400)
  t.match(await waiting.json(), {
    kind: 'Status',
    reason: 'BadRequest',
    code: 400,
    message: `container "notebook" in pod "${podName('image-pull-backoff')}" is waiting to start: trying and failing to pull image`,
  })
  const missing = await api('/pods/nope/log?container=notebook')
  t.equal(missing.status, 404)
  t.match(await missing.json(), {
    reason: 'NotFound',
    message: 'pods "nope" not found',
    details: { name: 'nope', kind: 'pods' },
  })
  const unscheduled = await api(`/pods/${podName('pending-unschedulable')}/log?container=notebook`)
  t.equal(unscheduled.status, 200)
  t.equal(await unscheduled.text(), '')
  const noContainer = await api(`/pods/${podName('running-ready')}/log?container=git`)
  t.equal(noContainer.status, 400)
  t.match(await noContainer.json(), {
    message: `container git is not valid for pod ${podName('running-ready')}`,
  })

  // A watch without a resourceVersion starts with a synthetic ADDED per pod, one compact JSON line each.
  const controller = new AbortController()
  const watch = await fetch(
    `${kube.url}/api/v1/namespaces/renku/pods?watch=true&labelSelector=renku.io/username%3Dalice`,
    {
      headers: { authorization: `Bearer ${kube.token}` },
      signal: controller.signal,
    },
  )
  t.equal(watch.status, 200)
  const reader = watch.body?.getReader()
  let text = ''
  while (reader && text.split('\n').length <= list.items.length) {
    const { value, done } = await reader.read()
    if (done) break
    text += new TextDecoder().decode(value)
  }
  controller.abort()
  const lines = text.trim().split('\n')
  t.equal(lines.length, list.items.length)
  t.ok(lines.every((line) => !line.includes('\n') && (JSON.parse(line) as { type: string }).type === 'ADDED'))
})
