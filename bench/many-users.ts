/**
 * The many-users scenario of `npm run bench`: USERS hub users with tokens (a few with a server)
 * read their servers through service instances that reach the hub through counting proxies, so
 * that what each replica asks of the hub is counted by path. Runs, one after another:
 *
 * - `GET servers` round-robin over the users at full speed (the connections of the main runs),
 *   and the hub's own `GET /hub/api/users/{name}` over the same users with their own tokens;
 * - paced polling (each user every 2 s) against one instance, then against two instances at
 *   once: the hub's load doubles with the replicas, not with the clients.
 *
 * Then the memory of a copy holding 10,000 users (bench/hub-state-memory.ts, own process).
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { type CountingProxy, startCountingProxy } from '../dev/counting-proxy.js'
import type { HubUser } from '../dev/hub.js'
import type { Stack } from '../dev/stack.js'
import { load, type Run, type Target, table } from './measure.js'

export interface ManyUsersSettings {
  users: number
  /** Users given a (running) server. */
  withServers: number
  seconds: number
  connections: number
  /** Seconds between two polls of one user in the paced runs. */
  pollEverySeconds: number
}

export interface ManyUsersOptions {
  stack: Stack
  settings: ManyUsersSettings
  /** Starts a service instance on the stack whose hub API is at `hubApiUrl`; returns its base URL. */
  startService(hubApiUrl: string): Promise<string>
  log(line: string): void
  cleanups: (() => Promise<unknown>)[]
}

/** Hub requests per second, by what was asked. */
export interface HubLoad {
  /** `GET /users?state=active…` pages. */
  list: number
  /** `GET /users/{name}`. */
  user: number
  /** `GET /user` (a token checked). */
  token: number
  other: number
  /** Server state: list pages and user reads (what the README's "Performance" bounds). */
  state: number
  total: number
}

export interface ManyUsersRun extends Run {
  label: string
  /** Per replica, in the order of the instances used. */
  hub: HubLoad[]
}

export const TARGET_STATE_RATE = 2
export const TARGET_MANY_RATIO = 20
export const TARGET_MANY_P99_MS = 20

const round1 = (value: number) => Math.round(value * 10) / 10

function hubLoad(requests: string[], seconds: number): HubLoad {
  const counts = { list: 0, user: 0, token: 0, other: 0 }
  for (const request of requests) {
    if (/^GET \/hub\/api\/users\?/.test(request)) counts.list++
    else if (/^GET \/hub\/api\/users\/[^/?]+(\?|$)/.test(request)) counts.user++
    else if (/^GET \/hub\/api\/user(\?|$)/.test(request)) counts.token++
    else counts.other++
  }
  const rate = (count: number) => round1(count / seconds)
  return {
    list: rate(counts.list),
    user: rate(counts.user),
    token: rate(counts.token),
    other: rate(counts.other),
    state: rate(counts.list + counts.user),
    total: rate(requests.length),
  }
}

async function inBatches<T, R>(items: T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = []
  for (let i = 0; i < items.length; i += size)
    results.push(...(await Promise.all(items.slice(i, i + size).map(work))))
  return results
}

async function createReaders(stack: Stack, settings: ManyUsersSettings): Promise<HubUser[]> {
  const names = Array.from({ length: settings.users }, (_, i) => `reader-${String(i).padStart(3, '0')}`)
  const created = await stack.hub.admin('POST', '/users', { usernames: names })
  if (created.status !== 201) throw new Error(`creating ${names.length} users answered ${created.status}`)
  const users = await inBatches(names, 20, (name) => stack.hub.createUser(name))
  await Promise.all(
    names.slice(0, settings.withServers).map(async (name) => {
      const started = await stack.hub.admin('POST', `/users/${name}/servers/work`, {})
      if (started.status !== 201 && started.status !== 202) {
        throw new Error(`starting a server for ${name} answered ${started.status}`)
      }
    }),
  )
  return users
}

/** Every user reads its servers once through the instance (their tokens are checked, the copy loads). */
async function warmUp(url: string, users: HubUser[], withServers: number): Promise<void> {
  const seen = await inBatches(users, 20, async (user) => {
    const response = await fetch(`${url}servers`, { headers: { authorization: `token ${user.token}` } })
    const body = (await response.json()) as { servers?: Record<string, unknown> }
    if (response.status !== 200) throw new Error(`GET servers as ${user.name} answered ${response.status}`)
    return Object.keys(body.servers ?? {}).length
  })
  const listed = seen.filter((count) => count > 0).length
  if (listed !== withServers) throw new Error(`${listed} users saw a server, not ${withServers}`)
}

const serversOf = (url: string, users: HubUser[], key: string, label: string): Target => ({
  key,
  label,
  url: `${url}servers`,
  headers: { accept: 'application/json' },
  requests: users.map((user) => ({
    headers: { accept: 'application/json', authorization: `token ${user.token}` },
  })),
})

async function measured(
  proxies: CountingProxy[],
  work: () => Promise<Run[]>,
): Promise<{ runs: Run[]; hub: HubLoad[] }> {
  const marks = proxies.map((proxy) => proxy.requests.length)
  const started = performance.now()
  const runs = await work()
  const seconds = (performance.now() - started) / 1000
  return { runs, hub: proxies.map((proxy, i) => hubLoad(proxy.requests.slice(marks[i]), seconds)) }
}

export interface ManyUsersReport {
  runs: ManyUsersRun[]
  memory: unknown
  ratio: number | null
  targets: Record<
    'hubStatePerReplica' | 'ratio' | 'p99',
    { goal: number; value: number | null; met: boolean }
  >
}

export async function manyUsers(options: ManyUsersOptions): Promise<ManyUsersReport> {
  const { stack, settings, log, cleanups } = options
  log(`many users: creating ${settings.users} hub users with tokens, ${settings.withServers} with a server…`)
  const users = await createReaders(stack, settings)
  const hubOrigin = new URL(stack.hub.apiUrl).origin
  const proxies: CountingProxy[] = []
  const urls: string[] = []
  for (let i = 0; i < 2; i++) {
    const proxy = await startCountingProxy(hubOrigin)
    cleanups.push(() => proxy.close())
    proxies.push(proxy)
    urls.push(await options.startService(`${proxy.url}/hub/api`))
  }
  const [proxyA, proxyB] = proxies as [CountingProxy, CountingProxy]
  const [urlA, urlB] = urls as [string, string]
  log('many users: every user reads once through each instance (tokens checked, copies loaded)…')
  await warmUp(urlA, users, settings.withServers)
  await warmUp(urlB, users, settings.withServers)

  const full = { connections: settings.connections, seconds: settings.seconds, timeoutSeconds: 10 }
  const pollRate = settings.users / settings.pollEverySeconds
  const paced = { connections: 20, seconds: settings.seconds, timeoutSeconds: 10, overallRate: pollRate }
  const runs: ManyUsersRun[] = []
  const record = (label: string, result: { runs: Run[]; hub: HubLoad[] }) => {
    for (const [i, run] of result.runs.entries()) {
      const which = result.runs.length > 1 ? ` (clients of ${String.fromCharCode(65 + i)})` : ''
      runs.push({ ...run, label: `${label}${which}`, hub: result.hub })
      const hub = result.hub.map((h) => `${h.state} state + ${h.token} GET /user`).join(', ')
      log(
        `  ${label}${which}: ${run.rate} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms; hub req/s per replica: ${hub}`,
      )
    }
  }

  log(`many users: GET servers round-robin, ${settings.connections} connections, ${settings.seconds} s…`)
  record(
    `service GET servers, ${settings.users} users round-robin, instance A`,
    await measured([proxyA], async () => [
      await load(serversOf(urlA, users, 'manyService', 'service'), full, 1),
    ]),
  )
  log(`many users: the hub's own GET /users/{name}, same users, ${settings.seconds} s…`)
  const hubTarget: Target = {
    key: 'manyHub',
    label: 'hub',
    url: `${hubOrigin}/hub/api/users/${users[0]?.name}`,
    headers: { accept: 'application/json' },
    requests: users.map((user) => ({
      path: `/hub/api/users/${user.name}`,
      headers: { accept: 'application/json', authorization: `token ${user.token}` },
    })),
  }
  record(`hub GET /hub/api/users/{name}, same users`, { runs: [await load(hubTarget, full, 1)], hub: [] })
  log(`many users: paced polling, each user every ${settings.pollEverySeconds} s, one instance…`)
  record(
    `paced (${pollRate}/s), instance A`,
    await measured([proxyA], async () => [await load(serversOf(urlA, users, 'pacedOne', 'paced'), paced, 1)]),
  )
  log('many users: paced polling on two instances at once…')
  record(
    `paced (${pollRate}/s each), instances A and B`,
    await measured([proxyA, proxyB], () =>
      Promise.all([
        load(serversOf(urlA, users, 'pacedTwoA', 'paced A'), paced, 1),
        load(serversOf(urlB, users, 'pacedTwoB', 'paced B'), paced, 1),
      ]),
    ),
  )

  log('many users: memory of a copy holding 10,000 users (own process)…')
  const memory = await memoryOfCopy()

  const [service, hub, pacedOne, pacedTwoA] = runs
  const ratio = service && hub && hub.rate > 0 ? Math.round((service.rate / hub.rate) * 10) / 10 : null
  const worstState = Math.max(
    ...[service, pacedOne, pacedTwoA].flatMap((run) => run?.hub.map((h) => h.state) ?? []),
  )
  const targets = {
    hubStatePerReplica: { goal: TARGET_STATE_RATE, value: worstState, met: worstState <= TARGET_STATE_RATE },
    ratio: { goal: TARGET_MANY_RATIO, value: ratio, met: (ratio ?? 0) >= TARGET_MANY_RATIO },
    p99: {
      goal: TARGET_MANY_P99_MS,
      value: service?.p99 ?? null,
      met: (service?.p99 ?? Infinity) < TARGET_MANY_P99_MS,
    },
  }
  return { runs, memory, ratio, targets }
}

async function memoryOfCopy(): Promise<unknown> {
  const script = path.join(import.meta.dirname, 'hub-state-memory.ts')
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', script], {
    timeout: 60_000,
  })
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}')
}

/** The scenario's tables and target lines. */
export function manyUsersText(report: ManyUsersReport, settings: ManyUsersSettings): string {
  const lines: string[] = []
  lines.push(
    `Many users: ${settings.users} hub users with tokens (${settings.withServers} with a server), ` +
      `${settings.seconds} s per run; hub requests counted per replica by a proxy in front of the hub`,
  )
  lines.push('')
  lines.push(
    table(
      [
        'run',
        'req/s',
        'p50 ms',
        'p99 ms',
        'failed',
        'hub lists/s',
        'hub user reads/s',
        'hub GET /user/s',
        'hub total/s',
      ],
      report.runs.map((run) => [
        run.label,
        run.rate,
        run.p50,
        run.p99,
        run.errors + run.timeouts + run.non2xx,
        run.hub.map((h) => h.list).join(' + ') || '',
        run.hub.map((h) => h.user).join(' + ') || '',
        run.hub.map((h) => h.token).join(' + ') || '',
        run.hub.map((h) => h.total).join(' + ') || '',
      ]),
    ),
  )
  lines.push('')
  const { targets } = report
  lines.push(
    `hub server-state requests per replica ≤ ${targets.hubStatePerReplica.goal}/s (worst run: ${targets.hubStatePerReplica.value}/s): ` +
      `${targets.hubStatePerReplica.met ? 'met' : 'NOT met'}; GET /user comes on top, once per token per token-cache lifetime`,
  )
  lines.push(
    `service/hub over the same users ≥ ${targets.ratio.goal}× (${targets.ratio.value}×): ${targets.ratio.met ? 'met' : 'NOT met'}`,
  )
  lines.push(
    `service p99 < ${targets.p99.goal} ms at ${settings.connections} connections (${targets.p99.value} ms): ` +
      `${targets.p99.met ? 'met' : 'NOT met'}`,
  )
  lines.push(`memory of a copy holding 10,000 users: ${JSON.stringify(report.memory)}`)
  return lines.join('\n')
}
