/**
 * What each replica of this service costs the hub's CPU with thousands of active servers.
 *
 *   npm run bench:hub-load                          # 500, 2000 and 5000 active servers
 *   npm run bench:hub-load -- --servers 500,2000 --window 20 --warmup 10 --clients 20
 *
 * For each N: a stock JupyterHub 3.0 (`/usr/bin/jupyterhub`, bench/hub-load/null_spawner_config.py)
 * starts on a database seeded with N users each holding one running named server
 * (bench/hub-load/seed.py). The servers are a spawner that starts no process: every one is the same
 * tiny HTTP server in this process, which answers anything. The proxy is external: this process
 * answers configurable-http-proxy's REST API from a route table that already holds the N routes,
 * so 5,000 routes cost neither a node process nor 5,000 route writes at start; the hub itself is
 * unchanged. Then, measured on the hub process alone (utime+stime from /proc/<pid>/stat over
 * `--window` seconds after `--warmup` seconds):
 *
 * - one full `GET /users?state=active` list, paged as the service pages it (the hub's own time
 *   from its log, summed over pages; median of three);
 * - hub CPU with no service, with one replica and with three replicas. Each replica is its own
 *   `node --import tsx server.ts` configured by the environment only (GitLab at a closed port, no
 *   Kubernetes), and `--clients` users poll `GET servers` on every replica every 2 s with their
 *   own tokens, so each copy is in use and each replica checks each token;
 * - the hub's answer time to a user's `GET /hub/api/user` as this process sees it (queueing
 *   included), asked every 250 ms by a user no client uses: p50 / max per phase;
 * - per phase from the hub's log: the service's list pages and token checks (`GET /user`).
 *
 * Why seeded, not spawned: 5,000 starts through the API cost the hub far more than the
 * measurement (each one a spawn, database writes and a route); a seeded hub loads them as a hub
 * restarting over running servers does, about 20 s for 5,000 on a quiet machine. Why not
 * configurable-http-proxy: the hub only talks to it at start and every 5 minutes
 * (`last_activity_interval`), so it is not in the measured windows either way, and its node process
 * would compete with the hub for the same cores. The measuring itself costs the hub about 2% (the
 * probe's 4 requests a second): that is the "no service" column.
 *
 * The hub's CPU share can only show load when the hub gets a core: on a machine whose load average
 * exceeds its cores the shares are capped and the latencies inflated; the report says so.
 *
 * Everything listens on 127.0.0.1; every process started is stopped at the end, on Ctrl-C and on
 * failure. Prints the table, per-phase details, and a last line of JSON.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const HUB_CONFIG = path.join(ROOT, 'bench/hub-load/null_spawner_config.py')
const SEED = path.join(ROOT, 'bench/hub-load/seed.py')
const JUPYTERHUB = '/usr/bin/jupyterhub'
const PYTHON = '/usr/bin/python3'
const USER_PREFIX = 'u'
const PROBE_USER = 'probe'
const PREFIX = '/services/notebooks/'
const PAGE_LIMIT = 200
const CLIENT_EVERY_MS = 2000
const PROBE_EVERY_MS = 250

const { values: args } = parseArgs({
  options: {
    servers: { type: 'string', default: '500,2000,5000' },
    window: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '10' },
    clients: { type: 'string', default: '20' },
    keep: { type: 'boolean', default: false },
  },
})

function wholeNumbers(name: string, raw: string): number[] {
  const numbers = raw.split(',').map((part) => Number(part.trim()))
  if (numbers.length === 0 || numbers.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`--${name} must be positive whole numbers separated by commas, not "${raw}"`)
  }
  return numbers
}
const wholeNumber = (name: string, raw: string) => wholeNumbers(name, raw)[0] ?? 0
const SIZES = wholeNumbers('servers', args.servers)
const WINDOW_S = wholeNumber('window', args.window)
const WARMUP_S = wholeNumber('warmup', args.warmup)
const CLIENTS = wholeNumber('clients', args.clients)
const CLOCK_TICKS = Number((await promisify(execFile)('getconf', ['CLK_TCK'])).stdout.trim()) || 100

const log = (line: string) => process.stderr.write(`[hub-load] ${line}\n`)
const token = () => randomBytes(24).toString('hex')
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN
}
const maximum = (values: number[]) => (values.length ? Math.max(...values) : Number.NaN)

// --- processes and cleanup ------------------------------------------------------------------------

const children = new Set<ChildProcess>()
/** The run dir of the size being measured, removed on Ctrl-C too (unless --keep). */
let currentRunDir: string | undefined
const closers: (() => Promise<unknown>)[] = []

function start(
  command: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
  cwd = ROOT,
): ChildProcess {
  const out = createWriteStream(logFile, { flags: 'a' })
  const child = spawn(command, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.pipe(out)
  child.stderr?.pipe(out)
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

async function stop(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

async function cleanup(): Promise<void> {
  await Promise.all([...children].map((child) => stop(child)))
  for (const close of closers.splice(0).reverse()) await close().catch(() => {})
}
// Last resort when the process ends some other way: nothing may outlive the benchmark.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping everything`)
    void cleanup()
      .then(() =>
        currentRunDir && !args.keep ? rm(currentRunDir, { recursive: true, force: true }) : undefined,
      )
      .finally(() => process.exit(130))
  })
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  closers.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(resolve)
      }),
  )
  return (server.address() as AddressInfo).port
}

// --- the null server and the proxy's route table -------------------------------------------------

/** Every "server": answers anything, as a running single-user server answers the hub's check. */
async function startNullServer(): Promise<number> {
  return listen(
    http.createServer((_req, res) =>
      // The version header spares the hub a warning per server.
      res.writeHead(200, { 'content-type': 'text/plain', 'x-jupyterhub-version': '3.0.0' }).end('ok'),
    ),
  )
}

/**
 * configurable-http-proxy's REST API (`/api/routes`) over a table in memory, holding the seeded
 * servers' routes from the start, as a proxy that outlived a hub restart would.
 */
async function startRouteTable(proxyToken: string, names: string[], nullPort: number) {
  const routes = new Map<string, Record<string, unknown>>()
  for (const name of names) {
    routes.set(`/user/${name}/srv`, {
      target: `http://127.0.0.1:${nullPort}`,
      jupyterhub: true,
      user: name,
      server_name: 'srv',
    })
  }
  const server = http.createServer(async (req, res) => {
    if (req.headers.authorization !== `token ${proxyToken}`) return res.writeHead(403).end()
    const url = new URL(req.url ?? '/', 'http://proxy')
    const route = decodeURIComponent(url.pathname.replace(/^\/api\/routes/, '')) || '/'
    let body = ''
    for await (const chunk of req) body += chunk
    if (req.method === 'GET' && url.pathname === '/api/routes') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify(Object.fromEntries(routes)))
    } else if (req.method === 'POST') {
      routes.set(route, JSON.parse(body || '{}'))
      res.writeHead(201).end()
    } else if (req.method === 'DELETE') {
      routes.delete(route)
      res.writeHead(204).end()
    } else {
      res.writeHead(404).end()
    }
  })
  return listen(server)
}

// --- the hub ---------------------------------------------------------------------------------------

interface Hub {
  child: ChildProcess
  pid: number
  apiUrl: string
  logFile: string
  serviceToken: string
  adminToken: string
  clientTokens: { user: string; token: string }[]
  probeToken: string
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The fields after the command name, which may hold spaces: utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

async function hubGet(hub: Hub, pathAndQuery: string, tok: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${hub.apiUrl}${pathAndQuery}`, {
    headers: { authorization: `token ${tok}`, ...headers },
    signal: AbortSignal.timeout(30_000),
  })
  const text = await response.text()
  if (response.status !== 200)
    throw new Error(`hub ${pathAndQuery}: ${response.status} ${text.slice(0, 200)}`)
  return JSON.parse(text) as unknown
}

async function startHub(runDir: string, servers: number): Promise<Hub> {
  const names = Array.from({ length: servers }, (_, i) => `${USER_PREFIX}${String(i + 1).padStart(5, '0')}`)
  const nullPort = await startNullServer()
  const proxyToken = token()
  const proxyPort = await startRouteTable(proxyToken, names, nullPort)
  const began = performance.now()
  await promisify(execFile)(PYTHON, [
    SEED,
    path.join(runDir, 'jupyterhub.sqlite'),
    String(servers),
    String(nullPort),
    USER_PREFIX,
  ])
  const clientTokens = names.slice(0, CLIENTS).map((user) => ({ user, token: token() }))
  const probeToken = token()
  const tokensFile = path.join(runDir, 'user-tokens.json')
  // The probe user is created by the hub from its token (JupyterHub.api_tokens).
  writeFileSync(
    tokensFile,
    JSON.stringify(
      Object.fromEntries([...clientTokens.map((c) => [c.token, c.user]), [probeToken, PROBE_USER]]),
    ),
  )
  const hubPort = await freePort()
  const serviceToken = token()
  const adminToken = token()
  const logFile = path.join(runDir, 'hub.log')
  const child = start(
    JUPYTERHUB,
    ['-f', HUB_CONFIG],
    {
      PATH: process.env.PATH,
      HOME: runDir,
      BENCH_RUN_DIR: runDir,
      BENCH_HUB_PORT: String(hubPort),
      BENCH_PUBLIC_PORT: String(await freePort()),
      BENCH_PROXY_API_URL: `http://127.0.0.1:${proxyPort}`,
      BENCH_PROXY_TOKEN: proxyToken,
      BENCH_NULL_SERVER_URL: `http://127.0.0.1:${nullPort}`,
      NOTEBOOKS_API_TOKEN: serviceToken,
      BENCH_ADMIN_TOKEN: adminToken,
      BENCH_USER_TOKENS: tokensFile,
    },
    logFile,
    runDir,
  )
  if (child.pid === undefined) throw new Error('jupyterhub did not start')
  const hub: Hub = {
    child,
    pid: child.pid,
    apiUrl: `http://127.0.0.1:${hubPort}/hub/api`,
    logFile,
    serviceToken,
    adminToken,
    clientTokens,
    probeToken,
  }
  // Up once it has checked every seeded server and is running (its log says both; asking for the
  // list meanwhile would only slow it down), and then lists them all as active.
  const deadline = performance.now() + 300_000
  const started = (text: string) =>
    /Initialized \d+ spawners/.test(text) && /JupyterHub is now running/.test(text)
  while (!started(existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')) {
    if (child.exitCode !== null) throw new Error(`jupyterhub exited (${child.exitCode}); see ${logFile}`)
    if (performance.now() > deadline) throw new Error(`jupyterhub did not come up in 300 s; see ${logFile}`)
    await sleep(250)
  }
  const active = await fullList(hub)
  if (active.users !== servers) throw new Error(`the hub lists ${active.users} active users, not ${servers}`)
  log(`hub up with ${servers} active servers after ${((performance.now() - began) / 1000).toFixed(1)} s`)
  return hub
}

/** One full list as the service reads it, page by page; the users it held and the time it took. */
async function fullList(hub: Hub): Promise<{ users: number; pages: number; ms: number }> {
  const began = performance.now()
  const names = new Set<string>()
  let pages = 0
  for (let offset: number | null = 0; offset !== null && pages < 1000; pages++) {
    const page = (await hubGet(
      hub,
      `/users?state=active&include_stopped_servers=1&offset=${offset}&limit=${PAGE_LIMIT}`,
      hub.adminToken,
      { accept: 'application/jupyterhub-pagination+json' },
    )) as { items: { name: string }[]; _pagination: { next: { offset: number } | null } }
    for (const user of page.items) names.add(user.name)
    offset = page._pagination.next?.offset ?? null
  }
  return { users: names.size, pages, ms: performance.now() - began }
}

// --- the hub's log ---------------------------------------------------------------------------------

interface Logged {
  status: number
  method: string
  uri: string
  requester: string
  ms: number
}

const LOG_LINE =
  /\] (?<status>\d{3}) (?<method>[A-Z]+) (?<uri>\S+) \((?<requester>[^@)]*)@[^)]*\) (?<ms>[\d.]+)ms/

/** The hub's request lines written since byte `from` (returns the new end too). */
function readLog(file: string, from: number): { lines: Logged[]; end: number } {
  const end = statSync(file).size
  const text = readFileSync(file).subarray(from, end).toString('utf8')
  const lines: Logged[] = []
  for (const line of text.split('\n')) {
    const found = LOG_LINE.exec(line)?.groups
    if (found) {
      lines.push({
        status: Number(found.status),
        method: found.method ?? '',
        uri: found.uri ?? '',
        requester: found.requester ?? '',
        ms: Number(found.ms),
      })
    }
  }
  return { lines, end }
}

// --- the service -----------------------------------------------------------------------------------

interface Replica {
  child: ChildProcess
  url: string
}

async function startReplica(hub: Hub, runDir: string, index: number): Promise<Replica> {
  const port = await freePort()
  const closedPort = await freePort()
  const logFile = path.join(runDir, `service-${index}.log`)
  const child = start(
    process.execPath,
    ['--import', 'tsx', 'server.ts'],
    {
      PATH: process.env.PATH,
      HOME: runDir,
      NODE_ENV: 'production',
      JUPYTERHUB_API_URL: hub.apiUrl,
      JUPYTERHUB_API_TOKEN: hub.serviceToken,
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: '0',
      GITLAB_URL: `http://127.0.0.1:${closedPort}`,
      LOG_LEVEL: 'warn',
    },
    logFile,
  )
  const url = `http://127.0.0.1:${port}${PREFIX}`
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null) {
      const tail = readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n')
      throw new Error(`service replica ${index} exited (${child.exitCode}):\n${tail}`)
    }
    if (attempt > 300) throw new Error(`service replica ${index} did not answer in 30 s`)
    await sleep(100)
    const ok = await fetch(`${url}health`)
      .then((r) => r.status === 200)
      .catch(() => false)
    if (ok) return { child, url }
  }
}

/** A user polling `GET servers` on one replica every 2 s until stopped; counts answers. */
class Clients {
  ok = 0
  failed = 0
  /** Failed answers by status (`timeout`, `error` when there was none). */
  failures = new Map<string, number>()
  private running = true
  private loops: Promise<void>[] = []

  add(replica: Replica, tokens: { token: string }[]) {
    for (const [i, { token: tok }] of tokens.entries()) {
      this.loops.push(this.poll(replica, tok, (i * CLIENT_EVERY_MS) / tokens.length))
    }
  }

  private async poll(replica: Replica, tok: string, offsetMs: number) {
    await sleep(offsetMs)
    while (this.running) {
      const began = performance.now()
      try {
        const response = await fetch(`${replica.url}servers`, {
          headers: { authorization: `token ${tok}` },
          signal: AbortSignal.timeout(10_000),
        })
        await response.arrayBuffer()
        if (response.status === 200) this.ok++
        else this.fail(String(response.status))
      } catch (err) {
        this.fail((err as Error).name === 'TimeoutError' ? 'timeout' : 'error')
      }
      await sleep(Math.max(0, CLIENT_EVERY_MS - (performance.now() - began)))
    }
  }

  private fail(why: string) {
    this.failed++
    this.failures.set(why, (this.failures.get(why) ?? 0) + 1)
  }

  async stop() {
    this.running = false
    await Promise.all(this.loops)
  }
}

/** The hub's answer time to a user's own `GET /user`, asked every 250 ms, as a client sees it. */
class Probe {
  samples: { at: number; ms: number }[] = []
  private running = true
  private loop: Promise<void>

  constructor(hub: Hub) {
    this.loop = (async () => {
      while (this.running) {
        const began = performance.now()
        try {
          await hubGet(hub, '/user', hub.probeToken)
          this.samples.push({ at: began, ms: performance.now() - began })
        } catch {
          this.samples.push({ at: began, ms: Number.POSITIVE_INFINITY })
        }
        await sleep(Math.max(0, PROBE_EVERY_MS - (performance.now() - began)))
      }
    })()
  }

  between(from: number, to: number): number[] {
    return this.samples.filter((s) => s.at >= from && s.at < to).map((s) => s.ms)
  }

  async stop() {
    this.running = false
    await this.loop
  }
}

// --- one size ----------------------------------------------------------------------------------------

interface Phase {
  replicas: number
  hubCpuPercent: number
  probeP50Ms: number
  probeMaxMs: number
  /** The service's list pages per second, and the hub's mean time per page. */
  servicePagesPerSecond: number
  servicePageMs: number
  /** `GET /user` by the clients' tokens (a replica checking a token), per minute. */
  tokenChecksPerMinute: number
  clientRequestsOk: number
  clientRequestsFailed: number
  /** Failed client requests by status, over the whole run so far. */
  clientFailures: Record<string, number>
  /** The machine's 1-minute load average at the end of the window (the hub competes for the cores). */
  loadAverage: number
}

interface SizeResult {
  servers: number
  fullListHubMs: number
  fullListWallMs: number
  fullListPages: number
  phases: Phase[]
}

async function measure(hub: Hub, probe: Probe, clients: Clients, replicas: number): Promise<Phase> {
  await sleep(WARMUP_S * 1000)
  const { end: logFrom } = readLog(hub.logFile, 0)
  const okFrom = clients.ok
  const failedFrom = clients.failed
  const cpuFrom = cpuSeconds(hub.pid)
  const from = performance.now()
  await sleep(WINDOW_S * 1000)
  const cpuTo = cpuSeconds(hub.pid)
  const to = performance.now()
  const seconds = (to - from) / 1000
  const { lines } = readLog(hub.logFile, logFrom)
  const pages = lines.filter((l) => l.requester === 'notebooks' && l.uri.startsWith('/hub/api/users?'))
  const clientUsers = new Set(hub.clientTokens.map((c) => c.user))
  const tokenChecks = lines.filter(
    (l) => clientUsers.has(l.requester) && /^\/hub\/api\/user(\?|$)/.test(l.uri),
  )
  const probes = probe.between(from, to)
  const phase: Phase = {
    replicas,
    hubCpuPercent: Math.round(((cpuTo - cpuFrom) / seconds) * 1000) / 10,
    probeP50Ms: Math.round(median(probes)),
    probeMaxMs: Math.round(maximum(probes)),
    servicePagesPerSecond: Math.round((pages.length / seconds) * 10) / 10,
    servicePageMs: pages.length ? Math.round(pages.reduce((sum, l) => sum + l.ms, 0) / pages.length) : 0,
    tokenChecksPerMinute: Math.round((tokenChecks.length / seconds) * 60),
    clientRequestsOk: clients.ok - okFrom,
    clientRequestsFailed: clients.failed - failedFrom,
    clientFailures: Object.fromEntries(clients.failures),
    loadAverage: Math.round((loadavg()[0] ?? 0) * 10) / 10,
  }
  log(
    `  ${replicas} replica(s): hub CPU ${phase.hubCpuPercent}%, GET /user p50 ${phase.probeP50Ms} ms max ${phase.probeMaxMs} ms, ` +
      `${phase.servicePagesPerSecond} list pages/s, ${phase.tokenChecksPerMinute} token checks/min, ` +
      `load ${phase.loadAverage}, clients ${phase.clientRequestsOk} ok ${phase.clientRequestsFailed} failed ${JSON.stringify(phase.clientFailures)}`,
  )
  return phase
}

async function runSize(servers: number): Promise<SizeResult> {
  const runDir = await mkdtemp(path.join(tmpdir(), `hub-load-${servers}-`))
  currentRunDir = runDir
  log(`${servers} active servers (run dir ${runDir})`)
  const hub = await startHub(runDir, servers).catch(async (err) => {
    await cleanup()
    if (!args.keep) await rm(runDir, { recursive: true, force: true })
    throw err
  })
  const probe = new Probe(hub)
  const clients = new Clients()
  try {
    // Let the hub's start-up work (server checks, role assignment) settle before measuring.
    await sleep(3000)
    const lists: { hubMs: number; wallMs: number; pages: number }[] = []
    for (let i = 0; i < 3; i++) {
      const { end } = readLog(hub.logFile, 0)
      const list = await fullList(hub)
      await sleep(200) // the log line of the last page
      const pages = readLog(hub.logFile, end).lines.filter(
        (l) => l.requester === 'bench' && l.uri.startsWith('/hub/api/users?'),
      )
      lists.push({ hubMs: pages.reduce((sum, l) => sum + l.ms, 0), wallMs: list.ms, pages: list.pages })
    }
    const hubMs = median(lists.map((l) => l.hubMs))
    log(`  one full list: ${Math.round(hubMs)} ms of hub time over ${lists[0]?.pages ?? 0} pages`)
    const phases = [await measure(hub, probe, clients, 0)]
    const replicas: Replica[] = []
    for (const count of [1, 3]) {
      while (replicas.length < count) {
        const replica = await startReplica(hub, runDir, replicas.length + 1)
        replicas.push(replica)
        clients.add(replica, hub.clientTokens)
      }
      phases.push(await measure(hub, probe, clients, count))
    }
    return {
      servers,
      fullListHubMs: Math.round(hubMs),
      fullListWallMs: Math.round(median(lists.map((l) => l.wallMs))),
      fullListPages: lists[0]?.pages ?? 0,
      phases,
    }
  } finally {
    await clients.stop()
    await probe.stop()
    await cleanup()
    if (!args.keep) await rm(runDir, { recursive: true, force: true })
  }
}

// --- report ----------------------------------------------------------------------------------------------

function report(results: SizeResult[]): string {
  const phase = (r: SizeResult, replicas: number) => r.phases.find((p) => p.replicas === replicas)
  const cpu = (p?: Phase) => (p ? `${p.hubCpuPercent}%` : '')
  const rows = results.map((r) => {
    const [none, one, three] = [0, 1, 3].map((n) => phase(r, n))
    const latency = (p?: Phase) => (p ? `${p.probeP50Ms} / ${p.probeMaxMs}` : '–')
    return (
      `| ${r.servers.toLocaleString('en')} | ${(r.fullListHubMs / 1000).toFixed(2)} s | ${cpu(none)} | ${cpu(one)} | ` +
      `${cpu(three)} | ${latency(none)} · ${latency(one)} · ${latency(three)} ms |`
    )
  })
  const details = results.flatMap((r) =>
    r.phases.map(
      (p) =>
        `| ${r.servers.toLocaleString('en')} | ${p.replicas} | ${p.hubCpuPercent}% | ${p.servicePagesPerSecond} | ` +
        `${p.servicePageMs} ms | ${p.tokenChecksPerMinute} | ${p.probeP50Ms} / ${p.probeMaxMs} ms | ` +
        `${p.clientRequestsOk} / ${p.clientRequestsFailed} | ${p.loadAverage} |`,
    ),
  )
  const busiest = Math.max(...results.flatMap((r) => r.phases.map((p) => p.loadAverage)))
  const cores = availableParallelism()
  return [
    ...(busiest > cores
      ? [
          `Note: the machine's load average reached ${busiest} on ${cores} cores; the hub competed for CPU, so its share is capped and its latencies inflated.`,
          '',
        ]
      : []),
    `Hub CPU share over ${WINDOW_S} s (after ${WARMUP_S} s warm-up); ${CLIENTS} users poll GET servers on every replica every 2 s.`,
    '',
    '| active servers | one full list, hub time | hub CPU, no service | one replica | three replicas | hub `GET /user` p50 / max (none · one · three) |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    '| active servers | replicas | hub CPU | service list pages/s | hub ms per page | token checks/min | hub `GET /user` p50 / max | client GET servers ok / failed | load average |',
    '|---|---|---|---|---|---|---|---|---|',
    ...details,
  ].join('\n')
}

const results: SizeResult[] = []
try {
  for (const servers of SIZES) results.push(await runSize(servers))
} catch (err) {
  log(`failed: ${(err as Error).message}`)
  await cleanup()
  process.exitCode = 1
}
if (results.length) {
  process.stdout.write(
    `${report(results)}\n\n${JSON.stringify({ window: WINDOW_S, warmup: WARMUP_S, clients: CLIENTS, results })}\n`,
  )
}
