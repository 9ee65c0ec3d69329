/**
 * Memory of the hub-state copy holding many users: a stand-in answers the hub's paged user list
 * with USERS synthetic active users (one named server each, with launch-like user options); the
 * copy loads it through the real client; RSS and heap are read after a full GC, before and after.
 * Run by bench/servers.ts in its own process (`node --expose-gc --import tsx`), prints one JSON line.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { JupyterHubClient } from '../lib/hub/client.js'
import { HubReflector } from '../lib/hub/state/reflector.js'

const USERS = Number(process.env.BENCH_MEMORY_USERS ?? 10_000)
const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with --expose-gc')

function syntheticUser(i: number) {
  const name = `user-${String(i).padStart(5, '0')}`
  const server = `demo-project-${(i * 2654435761).toString(16).slice(-8).padStart(8, '0')}`
  return {
    kind: 'user',
    name,
    admin: false,
    roles: ['user'],
    groups: [],
    server: null,
    pending: null,
    created: '2026-01-01T00:00:00.000000Z',
    last_activity: '2026-01-01T00:00:00.000000Z',
    auth_state: null,
    servers: {
      [server]: {
        name: server,
        last_activity: '2026-01-01T00:00:00.000000Z',
        started: '2026-01-01T00:00:00.000000Z',
        pending: null,
        ready: true,
        stopped: false,
        url: `/user/${name}/${server}/`,
        user_options: {
          namespace: 'demo-group',
          project: 'demo-project',
          branch: 'master',
          commit_sha: (i * 40503).toString(16).padStart(40, 'a'),
          project_id: 101,
          notebook: null,
          image: 'registry.example.com/demo-group/demo-project:abcdef1',
          default_image_used: false,
          repository: 'https://gitlab.example.com/demo-group/demo-project.git',
          server_options: { cpu_request: 0.5, mem_request: '1G', defaultUrl: '/lab', lfs_auto_fetch: false },
        },
        progress_url: `/hub/api/users/${name}/servers/${server}/progress`,
        state: { pod_name: `jupyter-${name}--${server}` },
      },
    },
  }
}

// The stand-in builds each page on demand, as the hub does.
const hub = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://hub')
  if (url.searchParams.get('state') === 'inactive') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ items: [], _pagination: { offset: 0, limit: 200, total: 0, next: null } }))
    return
  }
  const offset = Number(url.searchParams.get('offset') ?? 0)
  const limit = Math.min(200, Number(url.searchParams.get('limit') ?? 50))
  const items = []
  for (let i = offset; i < Math.min(USERS, offset + limit); i++) items.push(syntheticUser(i))
  const next = offset + limit < USERS ? { offset: offset + limit, limit, url: '' } : null
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ items, _pagination: { offset, limit, total: USERS, next } }))
})
await new Promise<void>((resolve) => hub.listen(0, '127.0.0.1', resolve))
const apiUrl = `http://127.0.0.1:${(hub.address() as AddressInfo).port}/hub/api`

const measure = () => {
  gc()
  gc()
  const { rss, heapUsed } = process.memoryUsage()
  return { rss, heapUsed }
}
const client = new JupyterHubClient({ apiUrl, apiToken: 'unused' })
// Long enough that the one list taken in is the only one during the measurement.
const state = new HubReflector({
  hub: client,
  pollIntervalMs: 60_000,
  maxAgeMs: 120_000,
  pollTimeoutMs: 60_000,
})
const before = measure()
const started = performance.now()
const sample = await state.read('user-00000')
const loadMs = Math.round(performance.now() - started)
const after = measure()
const reads = 100_000
const readStart = performance.now()
for (let i = 0; i < reads; i++) await state.read(`user-${String(i % USERS).padStart(5, '0')}`)
const readMicroseconds = Math.round(((performance.now() - readStart) * 100_000) / reads) / 100
await state.stop()
hub.close()
const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10
process.stdout.write(
  `${JSON.stringify({
    users: state.size,
    servers: Object.keys(sample?.servers ?? {}).length,
    firstListMs: loadMs,
    pages: state.stats.pages,
    rssMB: { before: mb(before.rss), after: mb(after.rss), held: mb(after.rss - before.rss) },
    heapMB: {
      before: mb(before.heapUsed),
      after: mb(after.heapUsed),
      held: mb(after.heapUsed - before.heapUsed),
    },
    readMicroseconds,
  })}\n`,
)
