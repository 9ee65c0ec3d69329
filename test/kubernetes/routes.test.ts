/**
 * The whole service with Kubernetes configured (the API stand-in) over a real JupyterHub: the
 * server object takes its status and resources from the server's pod, only ever the caller's,
 * and readiness checks Kubernetes.
 */
import t from 'tap'
import type { ServerObject } from '../../schemas/servers.js'
import { fixtureFor, type PodFixtureName } from '../fixtures/kubernetes/index.js'
import { startKubernetes } from '../stand-ins/kubernetes.js'
import { eventually, startStack } from '../support/stack.js'

const kube = await startKubernetes({ namespace: 'renku' })
t.teardown(() => kube.close())
const stack = await startStack({
  serviceEnv: { KUBECONFIG: kube.kubeconfigPath, KUBERNETES_NAMESPACE: kube.namespace },
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
