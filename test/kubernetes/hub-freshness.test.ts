import t from 'tap'
import { fixtureFor } from '../../dev/fixtures/kubernetes/index.js'
import { startStack } from '../../dev/stack.js'
import { startKubernetes } from '../../dev/stand-ins/kubernetes.js'
import type { KubernetesPods } from '../../lib/kubernetes/client.js'
import type { ServerObject } from '../../schemas/servers.js'
import { countedReplica } from '../support/counted-replica.js'

// Loaded before the apps are built: the client library takes seconds to import on a busy machine.
await import('../../lib/kubernetes/client.js')
const kube = await startKubernetes({ namespace: 'renku' })
t.teardown(() => kube.close())
const stack = await startStack({
  serviceEnv: { KUBECONFIG: kube.kubeconfigPath, KUBERNETES_NAMESPACE: 'renku' },
})
t.teardown(() => stack.stop())
const { hub, users } = stack
const { app, proxy, base } = await countedReplica(t, stack, {
  KUBECONFIG: kube.kubeconfigPath,
  KUBERNETES_NAMESPACE: 'renku',
})

async function serversOf(token: string): Promise<Record<string, ServerObject>> {
  const response = await fetch(new URL('servers', base), { headers: { authorization: `token ${token}` } })
  if (response.status !== 200) throw new Error(`GET servers answered ${response.status}`)
  return ((await response.json()) as { servers: Record<string, ServerObject> }).servers
}

/** Milliseconds until `check` holds, probing every 50 ms; fails after `limitMs`. */
async function timeUntil(check: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const start = performance.now()
  while (!(await check())) {
    if (performance.now() - start > limitMs) throw new Error(`not within ${limitMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return performance.now() - start
}

const lists = (from: number) =>
  proxy.requests.slice(from).filter((r) => /^GET \/hub\/api\/users\?/.test(r)).length
const userReads = (from: number) =>
  proxy.requests.slice(from).filter((r) => /^GET \/hub\/api\/users\/developer\?/.test(r)).length

t.test('a server started and stopped at the hub shows through its pod within 2 s', async (t) => {
  const developer = users.developer.token
  t.same(await serversOf(developer), {}, 'no servers yet')
  await (app.kubernetes as KubernetesPods).reflector?.whenSynced()
  const mark = proxy.requests.length
  const began = performance.now()

  // As KubeSpawner does: the hub starts the server, whose pod is created, then becomes ready.
  t.equal(
    (await hub.admin('POST', '/users/developer/servers/elsewhere', {})).status,
    201,
    'started at the hub',
  )
  const creating = fixtureFor('container-creating', 'developer', 'elsewhere').pod
  kube.upsertPod(creating)
  const seen = await timeUntil(async () => !!(await serversOf(developer)).elsewhere, 2000, 'the new server')
  t.ok(seen <= 2000, `a server started at the hub shows once its pod is created (${Math.round(seen)} ms)`)
  kube.upsertPod(fixtureFor('running-ready', 'developer', 'elsewhere').pod)
  const ready = await timeUntil(
    async () => (await serversOf(developer)).elsewhere?.status.state === 'running',
    2000,
    'the server running',
  )
  t.ok(ready <= 2000, `and running once its pod is ready (${Math.round(ready)} ms)`)

  // Stopped at the hub: its pod is deleted.
  const stopped = await hub.admin('DELETE', '/users/developer/servers/elsewhere', { remove: true })
  t.ok([202, 204].includes(stopped.status), 'stopped at the hub')
  kube.removePod(creating.metadata.name)
  const gone = await timeUntil(async () => !(await serversOf(developer)).elsewhere, 2000, 'the stop')
  t.ok(gone <= 2000, `a server stopped at the hub goes once its pod is deleted (${Math.round(gone)} ms)`)

  const seconds = (performance.now() - began) / 1000
  const reads = userReads(mark)
  t.ok(reads >= 2 && reads <= 8, `the user was read alone for its pods' changes (${reads} reads)`)
  // The resync comes every 2 minutes at most while pods are watched.
  t.ok(lists(mark) <= 1, `the hub was listed ${lists(mark)} times in ${seconds.toFixed(1)} s`)
  t.equal(app.hubReflector.stats.listIntervalMs >= 120_000, true, 'lists are a rare resync')
})

t.test('without a pod watch, the hub is listed again as often as the budget allows', async (t) => {
  const mark = proxy.requests.length
  // A watch that lost events (410 Gone): the copy of the pods lists again, and so does the hub's.
  kube.expireWatches()
  await timeUntil(async () => lists(mark) >= 1, 5000, 'a resync of the hub after the pod relist')
  t.pass('the hub was listed after the pods were')
})
