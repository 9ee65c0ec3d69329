/**
 * `GET servers` through the service against the hub's own `GET /hub/api/users/{name}`, for one
 * user with 10 running servers, on the whole local stack (GitLab stand-in, a real JupyterHub
 * with the local spawner, the service on a real port). A third target, the service with pod
 * enrichment from the Kubernetes stand-in, runs unless BENCH_KUBERNETES=0.
 *
 *   npm run bench
 *
 * Then, unless BENCH_MANY_USERS=0, the many-users scenario (bench/many-users.ts): BENCH_USERS (200)
 * hub users polling through replicas that keep a copy of the hub's state, hub requests counted.
 *
 * Settings (environment): BENCH_SECONDS (10, per run), BENCH_CONNECTIONS (50), BENCH_ROUNDS
 * (2, the order of targets rotates every round), BENCH_WARMUP_SECONDS (3), BENCH_KUBERNETES,
 * BENCH_MANY_USERS, BENCH_USERS.
 * Prints a table and, last, one JSON line. Exits non-zero only when the run itself fails
 * (setup, or requests that failed or were not 2xx); targets that are missed are only reported.
 */
import { loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../app.js'
import { freePort } from '../dev/ports.js'
import { type Stack, startStack } from '../dev/stack.js'
import { startKubernetes } from '../dev/stand-ins/kubernetes.js'
import { loadConfig } from '../lib/core/config.js'
import type { ServerObject } from '../schemas/servers.js'
import { type ManyUsersReport, manyUsers, manyUsersText } from './many-users.js'
import { type LoadOptions, load, type Run, type Summary, summarize, type Target, table } from './measure.js'
import { type LoopDelay, sequential, type UpstreamCalls, watchLoop, watchUpstream } from './probes.js'

const USER = 'developer'
const SERVERS = 10
const TARGET_RATIO = 1.0
const TARGET_P99_MS = 50

function intSetting(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, not "${raw}"`)
  return value
}

const settings = {
  seconds: intSetting('BENCH_SECONDS', 10),
  connections: intSetting('BENCH_CONNECTIONS', 50),
  rounds: Math.max(1, intSetting('BENCH_ROUNDS', 2)),
  warmupSeconds: intSetting('BENCH_WARMUP_SECONDS', 3),
  kubernetes: process.env.BENCH_KUBERNETES !== '0',
  manyUsers: process.env.BENCH_MANY_USERS !== '0',
  users: Math.max(10, intSetting('BENCH_USERS', 200)),
}
const manyUsersSettings = {
  users: settings.users,
  withServers: 3,
  seconds: settings.seconds,
  connections: settings.connections,
  pollEverySeconds: 2,
}
const loadOptions: LoadOptions = {
  connections: settings.connections,
  seconds: settings.seconds,
  timeoutSeconds: 10,
}

// Everything is bounded: setup (hub start, 10 spawns), the runs, and the stop (the hub takes
// up to ~15 s to stop its servers).
const SETUP_LIMIT_MS = 240_000
const STOP_LIMIT_MS = 90_000
const targetCount = settings.kubernetes ? 3 : 2
const runLimitMs =
  targetCount *
  (settings.warmupSeconds + settings.rounds * settings.seconds + 5 * (settings.rounds + 1)) *
  1000
// Many users: creating them and their tokens, four runs, the memory measurement.
const manyUsersLimitMs = settings.manyUsers ? (180 + 4 * (settings.seconds + 10)) * 1000 : 0
const totalLimitMs = SETUP_LIMIT_MS + runLimitMs + manyUsersLimitMs + STOP_LIMIT_MS

const log = (line: string) => process.stderr.write(`${line}\n`)

// Cleanups run once, newest first, whether the run ends normally, fails, is interrupted or times out.
const cleanups: (() => Promise<unknown>)[] = []
let exiting = false
async function shutdown(code: number): Promise<never> {
  if (!exiting) {
    exiting = true
    const stopping = (async () => {
      for (const cleanup of cleanups.reverse()) {
        await cleanup().catch((err: unknown) => log(`cleanup failed: ${(err as Error).message}`))
      }
    })()
    await Promise.race([stopping, sleep(STOP_LIMIT_MS, undefined, { ref: false })])
    process.exit(code)
  }
  // A second signal while stopping: wait for the first shutdown to finish.
  return new Promise<never>(() => {})
}
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping the stack`)
    void shutdown(code)
  })
}
const overall = setTimeout(() => {
  log(`the benchmark did not finish within ${Math.round(totalLimitMs / 1000)} s; stopping`)
  void shutdown(1)
}, totalLimitMs)

async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([work, limit])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls until `check` returns a value, or fails naming `what` with the last state seen. */
async function until<T>(
  what: string,
  ms: number,
  check: () => Promise<{ value?: T; state: string }>,
): Promise<T> {
  const deadline = Date.now() + ms
  let state = ''
  while (Date.now() < deadline) {
    const seen = await check()
    if (seen.value !== undefined) return seen.value
    state = seen.state
    await sleep(500)
  }
  throw new Error(`timed out after ${ms / 1000} s waiting for ${what} (${state})`)
}

type ServerList = { servers: Record<string, ServerObject> }

/** The user's servers as the service at `url` lists them. */
async function listServers(url: string, token: string): Promise<ServerList> {
  const response = await fetch(`${url}servers`, {
    headers: { accept: 'application/json', authorization: `token ${token}` },
  })
  const text = await response.text()
  if (response.status !== 200)
    throw new Error(`GET servers answered ${response.status}: ${text.slice(0, 200)}`)
  return JSON.parse(text) as ServerList
}

/**
 * Ten servers for one user: five real launches through the service (every project, branch and
 * commit combination the fixture world allows), then servers with the first launch's user options
 * under other names, started at the hub directly, since the fixtures hold no more commits. The
 * service lists them like any other.
 */
async function seedServers(stack: Stack): Promise<string[]> {
  const call = stack.as(stack.users.developer)
  const { demo, notebook } = stack.world.projects
  const { commits } = stack.world
  const at = (project: typeof demo, branch: string, commit: string) => ({
    namespace: project.namespace.fullPath,
    project: project.path,
    branch,
    commit_sha: commit,
  })
  const launches = [
    at(demo, 'master', commits.demo.masterFirst),
    at(demo, 'master', commits.demo.masterSecond),
    at(demo, 'feature', commits.demo.feature),
    at(demo, 'feature', commits.demo.masterFirst),
    at(notebook, 'main', commits.notebook.main),
  ]
  const launched = await Promise.all(
    launches.map(async (launch) => {
      const response = await call<ServerObject & { code?: string }>('POST', 'servers', launch)
      if (response.status !== 201 && response.status !== 202) {
        throw new Error(
          `launching ${launch.project}@${launch.branch} answered ${response.status} ${response.body.code}`,
        )
      }
      return response.body.name
    }),
  )
  const [first] = launched
  const template = await stack.hub.admin('GET', `/users/${USER}`)
  const options = (template.body as { servers?: Record<string, { user_options?: Record<string, unknown> }> })
    .servers?.[first ?? '']?.user_options
  if (!options) throw new Error(`the hub has no user options for ${first}`)
  // Distinct names, same options: the local spawner checks out the launch's real branch.
  const copies = Array.from({ length: SERVERS - launched.length }, (_, i) => ({
    name: `${first}-${i + 1}`,
    userOptions: options,
  }))
  await Promise.all(
    copies.map(async ({ name, userOptions }) => {
      const response = await stack.hub.admin('POST', `/users/${USER}/servers/${name}`, userOptions)
      if (response.status !== 201 && response.status !== 202) {
        throw new Error(
          `starting ${name} at the hub answered ${response.status} ${JSON.stringify(response.body)}`,
        )
      }
    }),
  )
  const names = [...launched, ...copies.map((copy) => copy.name)]
  if (new Set(names).size !== SERVERS) throw new Error(`expected ${SERVERS} distinct server names`)
  return names
}

/** Another service instance on the stack, configured as `startStack`'s plus `env`; its base URL. */
async function startService(stack: Stack, env: Record<string, string> = {}): Promise<string> {
  const port = await freePort()
  const config = loadConfig({
    JUPYTERHUB_API_URL: stack.hub.apiUrl,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    JUPYTERHUB_ORIGIN: stack.hub.publicUrl,
    JUPYTERHUB_OAUTH_CALLBACK_URL: stack.hub.oauthRedirectUri,
    GITLAB_URL: stack.gitlab.url,
    NOTEBOOKS_LOGS_DIR: stack.hub.logsDir,
    LOG_LEVEL: process.env.SERVICE_LOG_LEVEL ?? 'silent',
    HOST: '127.0.0.1',
    PORT: String(port),
    ...env,
  })
  const app: FastifyInstance = await buildApp(config)
  cleanups.push(() => app.close())
  await app.listen({ host: config.host, port: config.port })
  return `http://127.0.0.1:${port}${config.servicePrefix}`
}

/**
 * A second service instance, configured as the first plus the Kubernetes stand-in, holding a
 * ready pod for each of the user's servers among the pods of 100 other users.
 */
async function enrichedService(stack: Stack, names: string[]): Promise<string> {
  const kube = await startKubernetes({ namespace: 'renku' })
  cleanups.push(() => kube.close())
  kube.seedServers(USER, names)
  for (let u = 0; u < 100; u++) kube.seedServers(`other-${u}`, ['a-1', 'b-2', 'c-3'])
  const url = await startService(stack, {
    KUBECONFIG: kube.kubeconfigPath,
    KUBERNETES_NAMESPACE: kube.namespace,
  })
  const token = stack.users.developer.token
  // The pod copy fills in the background; measure only once every server shows its pod.
  await until('pod details on all servers', 30_000, async () => {
    const list = Object.values((await listServers(url, token)).servers)
    const enriched = list.filter((server) => server.status.phase === 'Running').length
    return { value: enriched === SERVERS ? url : undefined, state: `${enriched}/${list.length} with pods` }
  })
  return url
}

function ratio(a: Summary | undefined, b: Summary | undefined): number | null {
  return a && b && b.rate > 0 ? Math.round((a.rate / b.rate) * 100) / 100 : null
}

async function main(): Promise<void> {
  const loadBefore = loadavg().map((v) => Math.round(v * 100) / 100)
  log(`starting the stack (GitLab stand-in, JupyterHub, service)…`)
  const stack = await within(60_000, 'starting the stack', startStack())
  cleanups.push(() => stack.stop())
  const token = stack.users.developer.token

  log(`launching ${SERVERS} servers for ${USER}…`)
  const names = await within(120_000, 'launching the servers', seedServers(stack))
  await until(`${SERVERS} ready servers`, 120_000, async () => {
    const list = Object.values((await listServers(stack.serviceUrl, token)).servers)
    const ready = list.filter((server) => server.status.ready && server.status.state === 'running').length
    return { value: ready === SERVERS ? true : undefined, state: `${ready}/${list.length} ready` }
  })

  const hubUrl = `${stack.hub.apiUrl}/users/${USER}`
  const headers = { accept: 'application/json', authorization: `token ${token}` }
  // Both answers must hold the 10 servers, else the comparison compares different work.
  const hubAnswer = await fetch(hubUrl, { headers })
  const hubText = await hubAnswer.text()
  const hubServers = Object.keys((JSON.parse(hubText) as { servers?: object }).servers ?? {}).length
  if (hubAnswer.status !== 200 || hubServers !== SERVERS) {
    throw new Error(
      `the hub answered ${hubAnswer.status} with ${hubServers} servers for the user's own token`,
    )
  }
  const serviceText = JSON.stringify(await listServers(stack.serviceUrl, token))

  const targets: Target[] = [
    { key: 'service', label: 'service GET servers', url: `${stack.serviceUrl}servers`, headers },
    { key: 'hub', label: `hub GET /hub/api/users/${USER}`, url: hubUrl, headers },
  ]
  const sizes: Record<string, number> = {
    service: Buffer.byteLength(serviceText),
    hub: Buffer.byteLength(hubText),
  }
  if (settings.kubernetes) {
    log('starting the Kubernetes stand-in and a second service instance with pod enrichment…')
    const url = await within(60_000, 'starting the enriched service', enrichedService(stack, names))
    targets.push({
      key: 'serviceKubernetes',
      label: 'service + Kubernetes enrichment',
      url: `${url}servers`,
      headers,
    })
    sizes.serviceKubernetes = Buffer.byteLength(JSON.stringify(await listServers(url, token)))
  }

  // Each call alone, one after another: what a request costs without any queueing. The second
  // line is the hub call the service makes (its own token, stopped servers included).
  const hubOrigin = new URL(stack.hub.apiUrl).origin
  const alone = async (url: string, authorization: string) => {
    const response = await fetch(url, { headers: { accept: 'application/json', authorization } })
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`${new URL(url).pathname} answered ${response.status}`)
  }
  const sequentialCalls: Record<string, Awaited<ReturnType<typeof sequential>>> = {
    hubUserToken: await sequential(100, () => alone(hubUrl, headers.authorization)),
    hubAsService: await sequential(100, () =>
      alone(`${hubUrl}?include_stopped_servers=1`, `token ${stack.serviceToken}`),
    ),
  }
  for (const target of targets) {
    if (target.key !== 'hub')
      sequentialCalls[target.key] = await sequential(100, () => alone(target.url, headers.authorization))
  }

  const runs: (Run & { loop: LoopDelay; hubCalls?: UpstreamCalls })[] = []
  // Round 0 warms up (connections, JIT, the identity cache) and is not counted; then the order of
  // the targets rotates each round, so that none always runs first or after the same neighbour.
  for (let round = 0; round <= settings.rounds; round++) {
    const shift = round === 0 ? 0 : (round - 1) % targets.length
    const order = [...targets.slice(shift), ...targets.slice(0, shift)]
    for (const target of order) {
      const seconds = round === 0 ? settings.warmupSeconds : settings.seconds
      if (seconds === 0) continue
      log(`${round === 0 ? 'warm-up' : `round ${round}`}: ${target.label}, ${seconds} s…`)
      const stopLoop = watchLoop()
      const stopHub = watchUpstream(hubOrigin, `/hub/api/users/`)
      const run = await load(target, { ...loadOptions, seconds }, round)
      const loop = stopLoop()
      const hubCalls = stopHub()
      runs.push({ ...run, loop, ...(target.key !== 'hub' && { hubCalls }) })
      log(
        `  ${run.rate} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, errors ${run.errors}, non-2xx ${run.non2xx}; ` +
          `event loop delay p99 ${loop.p99} ms` +
          (target.key === 'hub'
            ? ''
            : `; hub calls ${hubCalls.rate}/s, p50 ${hubCalls.p50} ms, p99 ${hubCalls.p99} ms`),
      )
      await sleep(500)
    }
  }

  // The service must still list all servers after the load.
  const after = Object.keys((await listServers(stack.serviceUrl, token)).servers).length

  let many: ManyUsersReport | undefined
  if (settings.manyUsers) {
    many = await within(
      manyUsersLimitMs,
      'the many-users scenario',
      manyUsers({
        stack,
        settings: manyUsersSettings,
        startService: (hubApiUrl) => startService(stack, { JUPYTERHUB_API_URL: hubApiUrl }),
        log,
        cleanups,
      }),
    )
  }
  const summaries = targets.map((target) => summarize(target, runs))
  const byKey = Object.fromEntries(summaries.map((s) => [s.target, s]))
  const service = byKey.service
  const hub = byKey.hub
  const ratios = {
    service: ratio(service, hub),
    ...(byKey.serviceKubernetes && { serviceKubernetes: ratio(byKey.serviceKubernetes, hub) }),
  }
  const met = {
    ratio: (ratios.service ?? 0) >= TARGET_RATIO,
    p99: service !== undefined && service.p99 < TARGET_P99_MS,
  }

  const out = (line = '') => process.stdout.write(`${line}\n`)
  out()
  out(
    `GET servers for one user with ${SERVERS} running servers: ${settings.connections} connections, ` +
      `${settings.rounds} × ${settings.seconds} s per target (after ${settings.warmupSeconds} s of warm-up)`,
  )
  out()
  out(
    table(
      [
        'target',
        'req/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'errors',
        'timeouts',
        'non-2xx',
        'requests',
        'body B',
      ],
      summaries.map((s) => [
        s.label,
        s.rate,
        s.p50,
        s.p99,
        s.max,
        s.errors,
        s.timeouts,
        s.non2xx,
        s.requests,
        sizes[s.target] ?? '',
      ]),
    ),
  )
  out()
  out(
    table(
      ['run', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'non-2xx'],
      runs
        .filter((run) => run.round > 0)
        .map((run) => [
          `round ${run.round} ${run.target}`,
          run.rate,
          run.p50,
          run.p99,
          run.errors,
          run.non2xx,
        ]),
    ),
  )
  out()
  out(
    "Inside this process during each run (the service's event loop; its calls to the hub, first request to last byte):",
  )
  out(
    table(
      [
        'run',
        'req/s',
        'loop p99 ms',
        'loop max ms',
        'hub calls/s',
        'requests per call',
        'call p50 ms',
        'call p99 ms',
      ],
      runs
        .filter((run) => run.round > 0)
        .map((run) => [
          `round ${run.round} ${run.target}`,
          run.rate,
          run.loop.p99,
          run.loop.max,
          run.hubCalls?.rate ?? '',
          run.hubCalls?.rate ? Math.round((run.rate / run.hubCalls.rate) * 10) / 10 : '',
          run.hubCalls?.p50 ?? '',
          run.hubCalls?.p99 ?? '',
        ]),
    ),
  )
  out()
  out('Each call alone, 100 one after another (ms):')
  out(
    table(
      ['call', 'p50', 'p99', 'mean'],
      Object.entries(sequentialCalls).map(([key, value]) => [key, value.p50, value.p99, value.mean]),
    ),
  )
  out()
  out(`ratio service/hub: ${ratios.service ?? 'n/a'}`)
  if (ratios.serviceKubernetes !== undefined) {
    out(`ratio (service + Kubernetes)/hub: ${ratios.serviceKubernetes ?? 'n/a'}`)
  }
  out(`target service/hub ≥ ${TARGET_RATIO}: ${met.ratio ? 'met' : 'NOT met'}`)
  out(
    `target service p99 < ${TARGET_P99_MS} ms at ${settings.connections} connections: ${met.p99 ? 'met' : 'NOT met'}`,
  )
  out(
    `load average before: ${loadBefore.join(' ')}, after: ${loadavg()
      .map((v) => v.toFixed(2))
      .join(' ')}`,
  )

  if (many) {
    out()
    out(manyUsersText(many, manyUsersSettings))
  }

  const failed = [...summaries, ...(many?.runs ?? [])]
    .filter((s) => s.errors + s.timeouts + s.non2xx > 0)
    .map((s) => ('label' in s && 'hub' in s ? s.label : s.target))
  const problems = [
    ...failed.map((key) => `${key}: requests failed or were not 2xx`),
    ...(after === SERVERS ? [] : [`the service listed ${after} servers after the load, not ${SERVERS}`]),
  ]
  out(
    JSON.stringify({
      bench: 'servers',
      servers: SERVERS,
      connections: settings.connections,
      seconds: settings.seconds,
      rounds: settings.rounds,
      results: byKey,
      bodyBytes: sizes,
      ratio: ratios,
      targets: {
        ratio: { goal: TARGET_RATIO, met: met.ratio },
        p99: { goalMs: TARGET_P99_MS, met: met.p99 },
      },
      loadAverage: { before: loadBefore, after: loadavg().map((v) => Math.round(v * 100) / 100) },
      runs: runs.filter((run) => run.round > 0),
      sequentialCalls,
      ...(many && { manyUsers: many }),
      problems,
    }),
  )
  for (const problem of problems) log(`error: ${problem}`)
  clearTimeout(overall)
  await shutdown(problems.length ? 1 : 0)
}

main().catch(async (err: unknown) => {
  log(`benchmark failed: ${err instanceof Error ? err.message : String(err)}`)
  clearTimeout(overall)
  await shutdown(1)
})
