/**
 * What pod enrichment costs `GET servers`: a user with 10 servers, served by a route that reads
 * the user from a hub stand-in (as the real route does) and then, in two variants, asks
 * `podsForUser` against the Kubernetes stand-in: with the watched copy of the pods (the
 * default) and with one pod list per request (`cache: false`). All run in the same process,
 * in interleaved rounds; the stand-ins run in a child process so that they do not share the
 * service's core.
 *
 *   npx tsx bench/kubernetes.ts [seconds=3] [connections=10] [rounds=3]
 */
import { fork } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import { startKubernetes } from '../dev/stand-ins/kubernetes.js'
import { createKubernetesPods, type KubernetesPods } from '../lib/kubernetes/client.js'
import type { PodView } from '../lib/servers/pods.js'

const USER = 'bench-user@example.com'
const SERVERS = Array.from({ length: 10 }, (_, i) => `project-${i}-${(0x1a2b3c00 + i).toString(16)}`)

interface Upstreams {
  hubUrl: string
  kubeconfigPath: string
  podNames: string[]
}

/** Child process: the Kubernetes stand-in (the user's 10 pods among 300 of other users) and a minimal hub. */
async function upstreams(): Promise<void> {
  const kube = await startKubernetes({ namespace: 'renku' })
  const podNames = kube.seedServers(USER, SERVERS)
  for (let u = 0; u < 100; u++) kube.seedServers(`other-${u}`, ['a-1', 'b-2', 'c-3'])
  const user = {
    name: USER,
    admin: false,
    servers: Object.fromEntries(
      SERVERS.map((name, i) => [
        name,
        {
          name,
          ready: true,
          pending: null,
          url: `/user/${USER}/${name}/`,
          started: '2026-01-05T09:40:00.000000Z',
          last_activity: '2026-01-05T09:45:00.000000Z',
          user_options: { namespace: 'science', project: name, commit_sha: 'a'.repeat(40) },
          state: { pod_name: podNames[i] },
        },
      ]),
    ),
  }
  const body = JSON.stringify(user)
  const hub = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve))
  const message: Upstreams = {
    hubUrl: `http://127.0.0.1:${(hub.address() as AddressInfo).port}/hub/api/users/${encodeURIComponent(USER)}`,
    kubeconfigPath: kube.kubeconfigPath,
    podNames,
  }
  process.send?.(message)
}

interface HubUserLike {
  servers: Record<string, { name: string; ready: boolean; state: { pod_name?: string } | null }>
}

async function run(seconds: number, connections: number, rounds: number): Promise<void> {
  const child = fork(fileURLToPath(import.meta.url), ['--upstreams'], { execArgv: ['--import', 'tsx'] })
  const up = await new Promise<Upstreams>((resolve, reject) => {
    child.once('message', (message) => resolve(message as Upstreams))
    child.once('error', reject)
  })
  // The two designs: a watched copy of the pods, and one pod list per request.
  const cached = createKubernetesPods({ kubeconfig: up.kubeconfigPath, namespace: 'renku' })
  const listing = createKubernetesPods({ kubeconfig: up.kubeconfigPath, namespace: 'renku', cache: false })
  await cached.reflector?.whenSynced()
  const agent = new http.Agent({ keepAlive: true })
  const readUser = () =>
    new Promise<HubUserLike>((resolve, reject) => {
      http
        .get(up.hubUrl, { agent }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => {
            text += chunk
          })
          res.on('end', () => resolve(JSON.parse(text) as HubUserLike))
        })
        .on('error', reject)
    })

  const app = Fastify()
  const serve = async (pods: KubernetesPods | null) => {
    const user = await readUser()
    const servers = Object.values(user.servers)
    const views: Map<string, PodView> = pods
      ? await pods.podsForUser(
          USER,
          servers.map((s) => ({ name: s.name, podName: s.state?.pod_name })),
        )
      : new Map()
    return {
      servers: Object.fromEntries(
        servers.map((s) => {
          const pod = views.get(s.name)
          return [
            s.name,
            {
              name: s.name,
              status: { ready: s.ready && (pod?.ready ?? true), phase: pod?.phase, step: pod?.step },
              resources: pod?.resources,
            },
          ]
        }),
      ),
    }
  }
  app.get('/baseline', () => serve(null))
  app.get('/cached', () => serve(cached))
  app.get('/listing', () => serve(listing))
  const base = await app.listen({ port: 0, host: '127.0.0.1' })

  for (const path of ['/cached', '/listing']) {
    const check = (await (await fetch(`${base}${path}`)).json()) as {
      servers: Record<string, { status: { phase?: string } }>
    }
    const enriched = Object.values(check.servers).filter((s) => s.status.phase === 'Running').length
    console.log(`${path}: ${enriched}/10 servers enriched`)
  }

  const measure = async (path: string) => {
    const result = await autocannon({ url: `${base}${path}`, connections, duration: seconds })
    return result.requests.average
  }
  // Interleaved rounds, medians: the machine may be busy with other work, unevenly.
  const paths = ['/baseline', '/cached', '/listing'] as const
  const samples: Record<(typeof paths)[number], number[]> = { '/baseline': [], '/cached': [], '/listing': [] }
  for (const path of paths) await autocannon({ url: `${base}${path}`, connections, duration: 1 })
  for (let round = 0; round < rounds; round++) {
    for (const path of paths) samples[path].push(await measure(path))
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0

  // podsForUser alone, one call after another: the latency a request pays.
  const latency = async (pods: KubernetesPods) => {
    const calls = 200
    const started = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) {
      await pods.podsForUser(
        USER,
        SERVERS.map((name) => ({ name })),
      )
    }
    return +(Number(process.hrtime.bigint() - started) / 1e6 / calls).toFixed(2)
  }

  // Each round's cost against the same round's baseline, then the median of those.
  const cost = (path: '/cached' | '/listing') =>
    `${(median(samples[path].map((rps, i) => 1 - rps / (samples['/baseline'][i] ?? rps))) * 100).toFixed(1)}%`
  const report = {
    seconds,
    connections,
    rounds,
    requestsPerSecond: {
      baseline: Math.round(median(samples['/baseline'])),
      cached: Math.round(median(samples['/cached'])),
      listing: Math.round(median(samples['/listing'])),
    },
    enrichmentCost: { cached: cost('/cached'), listing: cost('/listing') },
    podsForUserMs: { cached: await latency(cached), listing: await latency(listing) },
    samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.map(Math.round)])),
  }
  console.log(JSON.stringify(report, null, 2))
  await app.close()
  cached.close()
  listing.close()
  agent.destroy()
  child.kill()
}

if (process.argv.includes('--upstreams')) {
  await upstreams()
} else {
  const [seconds = '3', connections = '10', rounds = '3'] = process.argv.slice(2)
  await run(Number(seconds), Number(connections), Number(rounds))
}
