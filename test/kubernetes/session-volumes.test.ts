/**
 * Session volumes in Kubernetes, against the stand-in over a real socket: the stand-in's
 * PersistentVolumeClaims answer as the API server does, and the service's claim store and its
 * rules (listing, deleting, the `renku.io/stopped-at` annotation, retention) work through
 * `@kubernetes/client-node` on them.
 */
import t from 'tap'
import { fixtureFor } from '../../dev/fixtures/kubernetes/index.js'
import { type StandInClaim, startKubernetes } from '../../dev/stand-ins/kubernetes.js'
import { createKubernetesPods } from '../../lib/kubernetes/client.js'
import { escapeUsername } from '../../lib/kubernetes/labels.js'
import { KubernetesVolumeStore, STOPPED_AT_ANNOTATION } from '../../lib/kubernetes/volumes.js'
import { SessionVolumes } from '../../lib/servers/volumes.js'
import type { ServerObject } from '../../schemas/servers.js'

const k8s = await startKubernetes()
t.teardown(() => k8s.close())
const base = `${k8s.url}/api/v1/namespaces/${k8s.namespace}/persistentvolumeclaims`
const auth = { authorization: `Bearer ${k8s.token}` }

/** A claim as the spawner config makes it (README "Session volumes", the contract). */
function claimOf(user: string, server: string, extra: Record<string, string> = {}): StandInClaim {
  return {
    metadata: {
      name: `claim-${escapeUsername(user)}--${server}`,
      labels: {
        'renku.io/session-volume': 'true',
        'renku.io/username': escapeUsername(user),
        component: 'singleuser-storage',
      },
      annotations: {
        'hub.jupyter.org/username': user,
        'hub.jupyter.org/servername': server,
        'renku.io/namespace': 'demo-group',
        'renku.io/projectName': 'demo-project',
        'renku.io/branch': 'master',
        'renku.io/commit-sha': '0123456789abcdef0123456789abcdef01234567',
        ...extra,
      },
    },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1G' } } },
  }
}

t.test('the stand-in answers for claims as the API server does', async (t) => {
  const post = (body: unknown) =>
    fetch(base, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const created = await post(claimOf('alice', 'one'))
  t.equal(created.status, 201)
  const again = await post(claimOf('alice', 'one'))
  t.equal(again.status, 409)
  t.same(await again.json(), {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'persistentvolumeclaims "claim-alice--one" already exists',
    reason: 'AlreadyExists',
    details: { name: 'claim-alice--one', kind: 'persistentvolumeclaims' },
    code: 409,
  })
  await post(claimOf('bob', 'two'))

  const listed = await fetch(`${base}?labelSelector=${encodeURIComponent('renku.io/username=alice')}`, {
    headers: auth,
  })
  const list = (await listed.json()) as { kind: string; items: StandInClaim[] }
  t.equal(list.kind, 'PersistentVolumeClaimList')
  t.same(
    list.items.map((c) => c.metadata.name),
    ['claim-alice--one'],
    'listed by label selector',
  )

  const patch = (name: string, body: unknown, type = 'application/merge-patch+json') =>
    fetch(`${base}/${name}`, {
      method: 'PATCH',
      headers: { ...auth, 'content-type': type },
      body: JSON.stringify(body),
    })
  const patched = await patch('claim-alice--one', {
    metadata: { annotations: { 'renku.io/stopped-at': 'x' } },
  })
  t.equal(patched.status, 200)
  const annotations = ((await patched.json()) as StandInClaim).metadata.annotations ?? {}
  t.equal(annotations['renku.io/stopped-at'], 'x', 'merged in')
  t.equal(annotations['renku.io/branch'], 'master', 'the other annotations stay')
  await patch('claim-alice--one', { metadata: { annotations: { 'renku.io/stopped-at': null } } })
  t.notOk(k8s.claim('claim-alice--one')?.metadata.annotations?.['renku.io/stopped-at'], 'null removes')
  t.equal((await patch('claim-nobody', {})).status, 404)
  t.equal((await patch('claim-alice--one', {}, 'application/json')).status, 415, 'a patch needs a patch type')

  const deleted = await fetch(`${base}/claim-alice--one`, { method: 'DELETE', headers: auth })
  t.equal(deleted.status, 200)
  const missing = await fetch(`${base}/claim-alice--one`, { method: 'DELETE', headers: auth })
  t.equal(missing.status, 404)
  t.match(await missing.json(), {
    kind: 'Status',
    reason: 'NotFound',
    message: 'persistentvolumeclaims "claim-alice--one" not found',
    code: 404,
  })
  t.equal((await fetch(`${base}/claim-alice--one`, { headers: auth })).status, 404)
  await fetch(`${base}/claim-bob--two`, { method: 'DELETE', headers: auth })
})

t.test('kept volumes through the service’s claim store', async (t) => {
  const pods = createKubernetesPods({ kubeconfig: k8s.kubeconfigPath, cache: false })
  t.teardown(() => pods.close())
  const store = new KubernetesVolumeStore({
    api: pods.api,
    namespace: pods.namespace,
    pods: () => pods.allPods(),
  })
  const servers = new Map<string, ServerObject['status']['state']>()
  let now = new Date('2026-03-01T10:00:00Z')
  const volumes = new SessionVolumes({
    store,
    server: async (user, name) => {
      const state = servers.get(`${user}/${name}`)
      return state ? ({ name, status: { state } } as ServerObject) : undefined
    },
    retentionMs: 3_600_000,
    now: () => now,
  })

  k8s.addClaim(claimOf('alice', 'stopped'))
  k8s.addClaim(claimOf('alice', 'running'))
  k8s.addClaim(claimOf('alice', 'starting'))
  k8s.addClaim(claimOf('Alice', 'other'))
  // The running server's pod mounts its claim.
  const { pod } = fixtureFor('running-ready', 'alice', 'running')
  pod.spec = {
    ...pod.spec,
    volumes: [{ name: 'work', persistentVolumeClaim: { claimName: 'claim-alice--running' } }],
  }
  k8s.upsertPod(pod)
  servers.set('alice/starting', 'starting')

  const kept = await volumes.listStopped('alice', 'demo-group', 'demo-project')
  t.same(
    kept.map((v) => v.name),
    ['stopped'],
    'only the stopped server’s volume, and only her own (not “Alice”’s)',
  )
  t.match(kept[0], { branch: 'master', commit: '0123456', date: now.toISOString(), pvs: true })
  t.equal(
    k8s.claim('claim-alice--stopped')?.metadata.annotations?.[STOPPED_AT_ANNOTATION],
    now.toISOString(),
    'the first to see it stopped records when',
  )
  t.same(await volumes.listStopped('alice', 'demo-group', 'other-project'), [], 'per project')

  await t.rejects(volumes.remove('alice', 'running', 'demo-group', 'demo-project'), {
    statusCode: 409,
    code: 'SERVER_BUSY',
  })
  await t.rejects(volumes.remove('alice', 'starting', 'demo-group', 'demo-project'), {
    statusCode: 409,
    code: 'SERVER_BUSY',
  })
  await t.rejects(volumes.remove('bob', 'stopped', 'demo-group', 'demo-project'), {
    statusCode: 404,
    code: 'AUTOSAVE_NOT_FOUND',
  })

  // Retention: marked at 10:00; an hour later it goes, the busy ones stay.
  k8s.addClaim(claimOf('alice', 'was-running', { [STOPPED_AT_ANNOTATION]: '2026-03-01T09:00:00Z' }))
  servers.set('alice/was-running', 'running')
  now = new Date('2026-03-01T10:30:00Z')
  t.same((await volumes.sweep()).deleted, [], 'nothing before the retention')
  t.notOk(
    k8s.claim('claim-alice--was-running')?.metadata.annotations?.[STOPPED_AT_ANNOTATION],
    'a volume in use again loses its stop time',
  )
  now = new Date('2026-03-01T11:00:01Z')
  const sweep = await volumes.sweep()
  t.same(
    sweep.deleted,
    ['claim-alice--stopped'],
    'the one stopped past its retention, not the one stopped later',
  )
  t.notOk(k8s.claim('claim-alice--stopped'), 'deleted')
  t.ok(k8s.claim('claim-alice--running'), 'a running server’s volume stays')
  t.ok(k8s.claim('claim-alice--starting'), 'a starting server’s volume stays')
  // Two replicas sweeping at once: the second finds it gone, which is fine.
  await store.delete({ id: 'claim-alice--stopped' } as never)

  t.ok(k8s.claim('claim-alice--other'), 'one stopped for less than the retention stays')
  servers.delete('alice/starting')
  await volumes.remove('alice', 'starting', 'demo-group', 'demo-project')
  t.notOk(k8s.claim('claim-alice--starting'), 'deleted once its server is gone')
})
