/**
 * This replica's copy of the hub's server state, so that reading a user's servers costs the hub
 * nothing (SPEC 11); the pattern of KubeSpawner's ResourceReflector, for the hub's users.
 *
 * Call pattern:
 * - About once a second, `GET /users?state=active&include_stopped_servers=1`, paged (200 a page):
 *   every user with a running or pending server, with all their servers. Users absent from it and
 *   unknown to the copy have no server: they are answered with no hub call.
 * - A user whose servers have all stopped (a failed spawn, a culled server) drops out of that
 *   list. When a user the copy held with named servers drops out, that user is read alone once
 *   (`GET /users/{name}?include_stopped_servers=1`) and the stopped servers stay in the copy
 *   ("parked") so they list as `failed`. Parked users that were read lately are read again, a
 *   bounded number per poll (one by default), so their removal elsewhere shows.
 * - Each stop of a named server that the copy sees (a new `last_activity` of a stopped server) is
 *   asked about once: the first event of the hub's progress stream tells a failed spawn from a
 *   server that did start and was stopped (`last_start`). A user read alone shows it at once;
 *   elsewhere it follows within moments. A few such calls at a time; one that fails is tried
 *   again after `lastStartRetryMs` (30 s).
 * - Users that hold only stopped servers when the copy starts (or whose spawn failed between two
 *   lists) are found by a sweep of `GET /users?state=inactive&include_stopped_servers=1`, one
 *   page per poll, at start and then every `sweepIntervalMs` (10 min).
 * - The service's own starts and stops (JupyterHubClient observers): a start reads as a pending
 *   server until the hub answered, then the user is read alone once, before the caller learns
 *   the outcome; so a replica's next read shows its own writes.
 *
 * Freshness: readers wait for the first list. When the list fails and no page of it has arrived
 * for longer than `maxAgeMs` (2 s), reads fail with an UpstreamError naming JupyterHub (503)
 * instead of answering older state; a list that is merely slow (a busy hub) is waited out, up to
 * its time limit (`pollTimeoutMs`, 5 s). A read newer than the list it meets wins (each entry keeps when the
 * request that produced it was sent).
 *
 * Free of Fastify: the plugin starts nothing; the first read starts the poller, `stop()` ends it.
 */
import { UpstreamError } from '../core/errors.js'
import type { HubReadSource } from '../core/metrics.js'
import type { HubServer, HubUser, HubWriteObserver, JupyterHubClient, LastStart } from './client.js'

/** Where a read was answered from: the copy alone, or after waiting for a hub call. */

/** A user's servers as the copy holds them (never auth_state). Treat as read-only. */
export interface UserServers {
  name: string
  servers: Readonly<Record<string, HubServer>>
}

/** Counters for metrics; they only grow. */
export interface HubStateStats {
  /** Reads answered from the copy alone. */
  stateReads: number
  /** Reads that waited for a hub call (the first list, or one user's read). */
  hubReads: number
  /** Complete lists, their pages, and lists that failed. */
  polls: number
  pages: number
  pollFailures: number
  /** One-user reads: after a start or stop, a user leaving the list, parked users checked. */
  userReads: number
  /** Pages of the inactive users read by sweeps. */
  sweepPages: number
  /** Progress streams asked how a stopped server's last start ended. */
  lastStartChecks: number
}

export interface HubStateLogger {
  warn(obj: object, msg: string): void
  info?(obj: object, msg: string): void
}

export interface HubStateOptions {
  hub: Pick<
    JupyterHubClient,
    'listActiveUsers' | 'listUsersPage' | 'getUser' | 'forget' | 'observe' | 'lastStart'
  >
  /** Time between the starts of two lists; default 1000. */
  pollIntervalMs?: number
  /** How long without an answer to the list before reads fail; default 2000. */
  maxAgeMs?: number
  /** Time limit of each page of the list; default 5000. */
  pollTimeoutMs?: number
  /** Parked users (stopped servers only) read again per poll, of those read lately; default 1. */
  parkedChecksPerPoll?: number
  /** How long after its last read a parked user is kept current; default 60 000. */
  watchMs?: number
  /** Time between two sweeps of the inactive users (one page per poll); default 600 000. */
  sweepIntervalMs?: number
  /** Time limit of asking how a stopped server's last start ended; default 2000. */
  lastStartTimeoutMs?: number
  /** Wait before asking that again when the hub did not tell; default 30 000. */
  lastStartRetryMs?: number
  /** How many of those questions may be under way at once; default 4. */
  lastStartConcurrency?: number
  log?: HubStateLogger
  /** Told of every read and where it was answered from (for metrics). */
  onRead?: (source: HubReadSource) => void
}

interface Entry {
  servers: Record<string, HubServer>
  /** When the request that produced this entry was sent. */
  asOf: number
  /** Holds a running or pending server (else it is parked: stopped servers only). */
  active: boolean
  /** When a reader last asked for this user (-Infinity: never). */
  lastReadAt: number
  view?: UserServers
}

/** What is known of how a stopped server's last start ended, for one stop of it. */
interface LastStartCheck {
  /** The stop asked about: the stopped server's `last_activity` (the hub sets it on each stop). */
  stop: string | null
  result?: LastStart
  /** The question under way. */
  asking?: Promise<void>
  /** When the hub did not tell: not asked again before then. */
  retryAt?: number
}

const now = () => performance.now()
const hasNamedServer = (servers: Record<string, HubServer>) =>
  Object.keys(servers).some((name) => name !== '')
const ignore = () => {}

export class HubState implements HubWriteObserver {
  readonly stats: HubStateStats = {
    stateReads: 0,
    hubReads: 0,
    polls: 0,
    pages: 0,
    pollFailures: 0,
    userReads: 0,
    sweepPages: 0,
    lastStartChecks: 0,
  }

  private readonly hub: HubStateOptions['hub']
  private readonly pollIntervalMs: number
  private readonly maxAgeMs: number
  private readonly pollTimeoutMs: number
  private readonly parkedChecksPerPoll: number
  private readonly watchMs: number
  private readonly sweepIntervalMs: number
  private readonly lastStartTimeoutMs: number
  private readonly lastStartRetryMs: number
  private readonly lastStartConcurrency: number
  /** Per user and stopped server: how its last start ended. */
  private readonly lastStarts = new Map<string, Map<string, LastStartCheck>>()
  private lastStartsRunning = 0
  private readonly lastStartQueue: (() => void)[] = []
  /** The next page of the sweep under way; null when none is. */
  private sweepOffset: number | null = null
  private nextSweepAt = 0
  private readonly users = new Map<string, Entry>()
  /** Starts sent and not yet answered, per user and server. */
  private readonly startsUnderWay = new Map<string, Map<string, { server: HubServer; count: number }>>()
  /** One-user reads under way. */
  private readonly userReads = new Map<string, Promise<void>>()
  /** Users whose last read after a change failed: their entry cannot be trusted. */
  private readonly unsure = new Set<string>()
  private readonly unobserve: () => void
  private running = false
  private closed = false
  private loaded = false
  private startedAt = 0
  /** When a page of the list last arrived. */
  private lastContactAt = 0
  private failure: unknown
  private loop?: Promise<void>
  private wake?: () => void
  private firstListed!: () => void
  private readonly firstList = new Promise<void>((resolve) => {
    this.firstListed = resolve
  })

  constructor(private readonly options: HubStateOptions) {
    this.hub = options.hub
    this.pollIntervalMs = options.pollIntervalMs ?? 1000
    this.maxAgeMs = options.maxAgeMs ?? 2000
    this.pollTimeoutMs = options.pollTimeoutMs ?? 5000
    this.parkedChecksPerPoll = options.parkedChecksPerPoll ?? 1
    this.watchMs = options.watchMs ?? 60_000
    this.sweepIntervalMs = options.sweepIntervalMs ?? 600_000
    this.lastStartTimeoutMs = options.lastStartTimeoutMs ?? 2000
    this.lastStartRetryMs = options.lastStartRetryMs ?? 30_000
    this.lastStartConcurrency = options.lastStartConcurrency ?? 4
    this.unobserve = this.hub.observe(this)
  }

  /** Users held (active and parked). */
  get size(): number {
    return this.users.size
  }

  /** The user's servers (the default server included, stopped ones too), or null for none. */
  async read(user: string): Promise<UserServers | null> {
    this.start()
    let source: HubReadSource = 'state'
    if (!this.loaded) {
      source = 'hub'
      await this.waitForFirstList()
    }
    this.assertCurrent()
    const pending = this.userReads.get(user)
    const entry = this.users.get(user)
    if (pending) {
      source = 'hub'
      await pending.catch(ignore)
    }
    if (
      this.unsure.has(user) ||
      (!pending && entry && !entry.active && now() - entry.lastReadAt > this.watchMs)
    ) {
      // Not kept current lately: read it now (and keep it current while it is being read).
      source = 'hub'
      await this.readUser(user, false)
    }
    const current = this.users.get(user)
    if (current) current.lastReadAt = now()
    if (source === 'state') this.stats.stateReads++
    else this.stats.hubReads++
    this.options.onRead?.(source)
    return this.viewOf(user, current)
  }

  /** Starts polling, unless running or stopped for good. Reads call it. */
  start(): void {
    if (this.running || this.closed) return
    this.running = true
    this.startedAt = now()
    this.loop = this.run()
  }

  /** Stops polling for good; resolves once the list under way (if any) has ended. */
  async stop(): Promise<void> {
    this.closed = true
    this.running = false
    this.unobserve()
    this.wake?.()
    await this.loop
  }

  /** A start is about to be sent: until it is settled, the server reads as starting. */
  starting(user: string, server: string, userOptions: Record<string, unknown>): () => void {
    let servers = this.startsUnderWay.get(user)
    if (!servers) {
      servers = new Map()
      this.startsUnderWay.set(user, servers)
    }
    const held = servers.get(server) ?? {
      server: {
        name: server,
        ready: false,
        pending: 'spawn',
        stopped: false,
        url: '',
        started: null,
        last_activity: null,
        user_options: userOptions,
        state: null,
      },
      count: 0,
    }
    held.count++
    servers.set(server, held)
    let settled = false
    return () => {
      if (settled) return
      settled = true
      if (--held.count > 0) return
      servers.delete(server)
      if (servers.size === 0 && this.startsUnderWay.get(user) === servers) this.startsUnderWay.delete(user)
    }
  }

  /** A start or stop answered: read the user again, so the next read shows it. */
  async changed(user: string): Promise<void> {
    if (!this.running) return
    // A failure marks the user unsure: the next read of it asks the hub (and fails if it must).
    await this.readUser(user, true).catch(ignore)
  }

  private viewOf(user: string, entry: Entry | undefined): UserServers | null {
    const starting = this.startsUnderWay.get(user)
    if (!starting) {
      if (!entry) return null
      entry.view ??= { name: user, servers: entry.servers }
      return entry.view
    }
    const servers = { ...entry?.servers }
    for (const [name, { server }] of starting) servers[name] = server
    return { name: user, servers }
  }

  private async waitForFirstList(): Promise<void> {
    while (!this.loaded) {
      const remaining = Math.max(this.startedAt, this.lastContactAt) + this.maxAgeMs - now()
      if (remaining <= 0 || !this.running) break
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        this.firstList,
        new Promise((resolve) => {
          timer = setTimeout(resolve, remaining)
        }),
      ])
      clearTimeout(timer)
    }
    if (!this.loaded) throw this.unavailable()
  }

  /**
   * Unreachable: the list failed (refused, timed out, or a wrong answer) and nothing arrived for
   * longer than `maxAgeMs`. A list still under way is a slow hub, not a gone one; its time limit
   * bounds how long that can last.
   */
  private assertCurrent(): void {
    if (this.failure !== undefined && now() - this.lastContactAt > this.maxAgeMs) throw this.unavailable()
  }

  private unavailable(): UpstreamError {
    const failure = this.failure
    // The hub answering wrongly (e.g. a token without the scopes) stays a 502.
    if (failure instanceof UpstreamError && failure.failure === 'bad_response') return failure
    const since = Math.round(now() - Math.max(this.startedAt, this.lastContactAt))
    const why = failure instanceof Error ? `: ${(failure as UpstreamError).detail ?? failure.message}` : ''
    return new UpstreamError('JupyterHub', 'unavailable', `no answer to the user list for ${since} ms${why}`)
  }

  private async run(): Promise<void> {
    while (this.running) {
      const began = now()
      await this.poll()
      if (!this.running) break
      if (this.failure === undefined) await Promise.all([this.checkParked(), this.sweep()])
      const wait = this.pollIntervalMs - (now() - began)
      if (wait > 0) await this.sleep(wait)
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      // Stopped while this poll was under way: no sleep for stop() to wake from.
      if (!this.running) return resolve()
      const timer = setTimeout(resolve, ms)
      // A replica that was never closed must not be kept alive by its poller.
      timer.unref()
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private async poll(): Promise<void> {
    const asOf = now()
    try {
      const users = await this.hub.listActiveUsers({
        timeoutMs: this.pollTimeoutMs,
        onPage: () => {
          this.lastContactAt = now()
          this.stats.pages++
        },
      })
      this.merge(users, asOf)
      this.stats.polls++
      if (this.failure !== undefined)
        this.options.log?.info?.({ upstream: 'JupyterHub' }, 'the user list answers again')
      this.failure = undefined
      if (!this.loaded) {
        this.loaded = true
        this.firstListed()
      }
    } catch (err) {
      this.stats.pollFailures++
      if (this.failure === undefined) {
        const detail = err instanceof UpstreamError ? err.detail : (err as Error).message
        this.options.log?.warn(
          { upstream: 'JupyterHub', detail },
          'the user list failed; retrying every second',
        )
      }
      this.failure = err ?? new Error('the user list failed')
    }
  }

  /** Takes in a list sent at `asOf`; entries read alone since are newer and stay. */
  private merge(users: HubUser[], asOf: number): void {
    const listed = new Set<string>()
    for (const user of users) {
      listed.add(user.name)
      const entry = this.users.get(user.name)
      if (entry && entry.asOf > asOf) continue
      this.users.set(user.name, {
        servers: this.withLastStarts(user.name, user.servers),
        asOf,
        active: true,
        lastReadAt: entry?.lastReadAt ?? Number.NEGATIVE_INFINITY,
      })
    }
    for (const [name, entry] of this.users) {
      if (listed.has(name) || !entry.active || entry.asOf > asOf) continue
      // Left the list: all its servers stopped (or were removed). Read it alone to know which.
      if (hasNamedServer(entry.servers)) this.readUser(name, false).catch(ignore)
      else this.forgetUser(name)
    }
  }

  /** Reads again the parked users read lately that were checked longest ago, a few per poll. */
  private async checkParked(): Promise<void> {
    if (this.parkedChecksPerPoll <= 0) return
    const since = now() - this.watchMs
    const due: [string, Entry][] = []
    for (const item of this.users) {
      const [name, entry] = item
      if (!entry.active && entry.lastReadAt >= since && !this.userReads.has(name)) due.push(item)
    }
    due.sort(([, a], [, b]) => a.asOf - b.asOf)
    await Promise.all(
      due.slice(0, this.parkedChecksPerPoll).map(([name]) => this.readUser(name, false).catch(ignore)),
    )
  }

  /** One page of the sweep of inactive users: those holding stopped named servers are parked. */
  private async sweep(): Promise<void> {
    if (this.sweepOffset === null) {
      if (now() < this.nextSweepAt) return
      this.sweepOffset = 0
    }
    const asOf = now()
    try {
      const page = await this.hub.listUsersPage('inactive', this.sweepOffset, this.pollTimeoutMs)
      this.stats.sweepPages++
      for (const user of page.users) {
        if (hasNamedServer(user.servers) || this.users.has(user.name)) this.apply(user.name, user, asOf)
      }
      this.sweepOffset = page.next
    } catch (err) {
      // Tried again with the next poll, from the same page.
      const detail = err instanceof UpstreamError ? err.detail : (err as Error).message
      this.options.log?.warn({ upstream: 'JupyterHub', detail }, 'a page of the inactive users failed')
      return
    }
    if (this.sweepOffset === null) this.nextSweepAt = now() + this.sweepIntervalMs
  }

  /**
   * One user's read, shared with reads of it under way unless `fresh` (after a change, a read
   * sent before it would not show it).
   */
  private readUser(name: string, fresh: boolean): Promise<void> {
    const inFlight = this.userReads.get(name)
    if (inFlight && !fresh) return inFlight
    const asOf = now()
    // The client shares reads too: this one must be sent now.
    this.hub.forget(name)
    this.stats.userReads++
    const read = this.hub.getUser(name).then(
      (user) => {
        this.apply(name, user, asOf)
        this.unsure.delete(name)
        // Read alone, a user shows how its stopped servers' starts ended from the first read on.
        return this.lastStartsSettled(name)
      },
      (err: unknown) => {
        this.unsure.add(name)
        throw err
      },
    )
    const tracked = read.finally(() => {
      if (this.userReads.get(name) === tracked) this.userReads.delete(name)
    })
    this.userReads.set(name, tracked)
    return tracked
  }

  private apply(name: string, user: HubUser | null, asOf: number): void {
    const entry = this.users.get(name)
    if (entry && entry.asOf > asOf) return
    const servers = user?.servers ?? {}
    const active = Object.values(servers).some((server) => !server.stopped)
    if (!active && !hasNamedServer(servers)) {
      this.forgetUser(name)
      return
    }
    this.users.set(name, {
      servers: this.withLastStarts(name, servers),
      asOf,
      active,
      lastReadAt: entry?.lastReadAt ?? Number.NEGATIVE_INFINITY,
    })
  }

  private forgetUser(name: string): void {
    this.users.delete(name)
    this.lastStarts.delete(name)
  }

  /**
   * The servers to hold: each stopped named server with how its last start ended, when known
   * for this stop; asks the hub about the stops not known yet.
   */
  private withLastStarts(user: string, servers: Record<string, HubServer>): Record<string, HubServer> {
    const known = this.lastStarts.get(user)
    let held = servers
    for (const [name, server] of Object.entries(servers)) {
      if (name === '' || !server.stopped) {
        known?.delete(name)
        continue
      }
      const check = known?.get(name)
      if (check?.stop === server.last_activity && check.result) {
        // A copy: the hub's answer may be shared with other readers of the user.
        if (held === servers) held = { ...servers }
        held[name] = { ...server, last_start: check.result }
      } else {
        this.askLastStart(user, server)
      }
    }
    for (const name of known?.keys() ?? []) if (!(name in servers)) known?.delete(name)
    if (known?.size === 0) this.lastStarts.delete(user)
    return held
  }

  /** Asks the hub once per stop (unless asked lately without an answer). */
  private askLastStart(user: string, server: HubServer): void {
    let known = this.lastStarts.get(user)
    const current = known?.get(server.name)
    if (
      current?.stop === server.last_activity &&
      (current.asking || (current.retryAt !== undefined && now() < current.retryAt))
    ) {
      return
    }
    if (!known) {
      known = new Map()
      this.lastStarts.set(user, known)
    }
    const check: LastStartCheck = { stop: server.last_activity }
    known.set(server.name, check)
    check.asking = this.limited(async () => {
      if (this.closed || this.lastStarts.get(user)?.get(server.name) !== check) return
      this.stats.lastStartChecks++
      return this.hub.lastStart(user, server.name, this.lastStartTimeoutMs)
    }).then(
      (result) => {
        check.asking = undefined
        if (result) this.noteLastStart(user, server.name, check, result)
        else check.retryAt = now() + this.lastStartRetryMs
      },
      (err: unknown) => {
        check.asking = undefined
        check.retryAt = now() + this.lastStartRetryMs
        const detail = err instanceof UpstreamError ? err.detail : (err as Error).message
        this.options.log?.warn(
          { upstream: 'JupyterHub', detail },
          'could not tell how a stopped server’s last start ended',
        )
      },
    )
  }

  /** Shows the answer in the held servers, if they still hold that stop. */
  private noteLastStart(user: string, name: string, check: LastStartCheck, result: LastStart): void {
    if (this.lastStarts.get(user)?.get(name) !== check) return
    check.result = result
    const entry = this.users.get(user)
    const server = entry?.servers[name]
    if (!entry || !server?.stopped || server.last_activity !== check.stop) return
    entry.servers = { ...entry.servers, [name]: { ...server, last_start: result } }
    entry.view = undefined
  }

  /** Settles once the questions under way about the user's stopped servers are answered. */
  private async lastStartsSettled(user: string): Promise<void> {
    const asking = [...(this.lastStarts.get(user)?.values() ?? [])].map((check) => check.asking)
    await Promise.all(asking)
  }

  /** Runs `task` when fewer than `lastStartConcurrency` others run. */
  private async limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.lastStartsRunning >= this.lastStartConcurrency) {
      await new Promise<void>((resolve) => this.lastStartQueue.push(resolve))
    } else {
      this.lastStartsRunning++
    }
    try {
      return await task()
    } finally {
      const next = this.lastStartQueue.shift()
      if (next) next()
      else this.lastStartsRunning--
    }
  }
}
