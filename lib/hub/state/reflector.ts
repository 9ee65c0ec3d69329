/**
 * This replica's copy of the hub's server state, so that reading a user's servers costs the hub
 * nothing (README "Performance"); the pattern of KubeSpawner's ResourceReflector, for the hub's
 * users: the copy only mirrors the hub, and readers never go around it.
 *
 * What keeps it current, within the hub's budget (README "Performance"):
 * - the full list of active users (./poller.ts), as often as its measured cost allows with the
 *   hub alone, and only as a rare resync while the servers' pods are watched; users absent from
 *   it and unknown to the copy have no server and are answered with no hub call;
 * - with Kubernetes, the pod copy's events: each pod that changes has its user read alone
 *   (./targeted-reads.ts), and read again while the hub still shows a server starting or
 *   stopping, for a few seconds after the pod's last change;
 * - a read that names a server the copy shows starting or stopping (or does not hold) reads its
 *   user first, at most once a second per user, so a client following a launch sees the hub's
 *   change within 2 s;
 * - one-user reads (`GET /users/{name}?include_stopped_servers=1`, shared through the client):
 *   a user the copy held with named servers that drops out of the list is read alone once and
 *   its stopped servers stay ("parked") so they list as `failed`; parked users read lately are
 *   read again, a few per list, so their removal elsewhere shows;
 * - how a stopped server's last start ended (./last-starts.ts), the inactive users' sweep
 *   (./inactive-sweep.ts) and this replica's own starts (./own-starts.ts): a start reads as
 *   pending until the hub answered, then the user is read alone once, before the caller learns
 *   the outcome, so a replica's next read shows its own writes.
 *
 * A read newer than the list it meets wins (each entry keeps when the request that produced it
 * was sent). Free of Fastify: the first read starts the poller, `stop()` ends it.
 */
import type { HubReadSource } from '../../core/metrics.js'
import type { HubServer, HubUser, HubWriteObserver } from '../client.js'
import { InactiveSweep } from './inactive-sweep.js'
import { LastStartChecks } from './last-starts.js'
import { OwnStarts } from './own-starts.js'
import { ActiveListPoller } from './poller.js'
import { TargetedReads } from './targeted-reads.js'
import type { HubReflectorOptions, HubReflectorStats, UserServers } from './types.js'

export type { HubReflectorOptions, HubReflectorStats, PodChanges, UserServers } from './types.js'

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

const now = () => performance.now()
const hasNamedServer = (servers: Record<string, HubServer>) =>
  Object.keys(servers).some((name) => name !== '')
const ignore = () => {}

export class HubReflector implements HubWriteObserver {
  private readonly hub: HubReflectorOptions['hub']
  private readonly users = new Map<string, Entry>()
  /** One-user reads under way (the client shares them; this only lets readers wait for them). */
  private readonly userReads = new Map<string, Promise<void>>()
  /** Users whose last read after a change failed: their entry cannot be trusted. */
  private readonly unsure = new Set<string>()
  private readonly ownStarts = new OwnStarts()
  private readonly lastStarts: LastStartChecks
  private readonly sweep: InactiveSweep
  private readonly poller: ActiveListPoller
  private readonly targeted: TargetedReads
  /** Users to read again while a server is in transition, until then (after a pod change). */
  private readonly following = new Map<string, number>()
  private readonly unobserve: () => void
  private readonly unfollowPods: () => void
  /** Reads by name of servers the copy does not hold, this second. */
  private unknownReads = { second: 0, count: 0 }
  private readonly counts = { stateReads: 0, hubReads: 0, userReads: 0 }

  constructor(private readonly options: HubReflectorOptions) {
    this.hub = options.hub
    this.lastStarts = new LastStartChecks({
      hub: this.hub,
      timeoutMs: options.lastStartTimeoutMs,
      retryMs: options.lastStartRetryMs,
      concurrency: options.lastStartConcurrency,
      log: options.log,
      onAnswer: (user, name, stop, result) => {
        const entry = this.users.get(user)
        const server = entry?.servers[name]
        if (!entry || !server?.stopped || server.last_activity !== stop) return
        entry.servers = { ...entry.servers, [name]: { ...server, last_start: result } }
        entry.view = undefined
      },
    })
    this.sweep = new InactiveSweep({
      hub: this.hub,
      intervalMs: options.sweepIntervalMs,
      timeoutMs: options.pollTimeoutMs,
      log: options.log,
      onUser: (user, asOf) => {
        if (hasNamedServer(user.servers) || this.users.has(user.name)) this.apply(user.name, user, asOf)
      },
    })
    const { podChanges } = options
    this.poller = new ActiveListPoller({
      hub: this.hub,
      intervalMs: () =>
        podChanges?.watching ? (options.resyncIntervalMs ?? 120_000) : (options.pollIntervalMs ?? 1000),
      listCostShare: options.listCostShare,
      // Liveness and chores once a second, or as often as lists come when they come more often.
      tickMs: Math.min(1000, options.pollIntervalMs ?? 1000),
      maxAgeMs: options.maxAgeMs,
      timeoutMs: options.pollTimeoutMs,
      log: options.log,
      onList: (users, asOf) => this.merge(users, asOf),
      onTick: async () => {
        await Promise.all([this.checkParked(), this.sweep.step()])
      },
    })
    this.targeted = new TargetedReads({
      read: (user) => this.readUser(user).then(() => this.followUp(user)),
      minGapMs: options.userReadGapMs,
    })
    this.unobserve = this.hub.observe(this)
    this.unfollowPods = podChanges?.onUserPodsChanged((user) => this.podChanged(user)) ?? (() => {})
  }

  get stats(): HubReflectorStats {
    return {
      ...this.counts,
      polls: this.poller.polls,
      pages: this.poller.pages,
      pollFailures: this.poller.failures,
      sweepPages: this.sweep.pages,
      lastStartChecks: this.lastStarts.asked,
      targetedReads: this.targeted.sent,
      probes: this.poller.probes,
      listIntervalMs: Math.round(this.poller.intervalMs),
      listMs: Math.round(this.poller.listMs),
    }
  }

  /** Users held (active and parked). */
  get size(): number {
    return this.users.size
  }

  /**
   * The user's servers (the default server included, stopped ones too), or null for none.
   * `following`: a server the caller asks for by name; while the copy shows it starting or
   * stopping, or does not hold it, the user is read from the hub first (see `worthReading`).
   */
  async read(user: string, following?: string): Promise<UserServers | null> {
    this.start()
    let source: HubReadSource = 'state'
    if (!this.poller.hasListed) {
      source = 'hub'
      await this.poller.waitForFirstList()
    }
    this.poller.assertCurrent()
    const pending = this.userReads.get(user)
    const entry = this.users.get(user)
    if (pending) {
      source = 'hub'
      await pending.catch(ignore)
    }
    if (
      this.unsure.has(user) ||
      (!pending && entry && !entry.active && now() - entry.lastReadAt > (this.options.watchMs ?? 60_000))
    ) {
      // Not kept current lately: read it now (and keep it current while it is being read).
      source = 'hub'
      await this.readUser(user)
    } else if (following !== undefined && this.worthReading(user, entry?.servers[following])) {
      source = 'hub'
      await this.targeted.request(user)
    }
    const current = this.users.get(user)
    if (current) current.lastReadAt = now()
    if (source === 'state') this.counts.stateReads++
    else this.counts.hubReads++
    this.options.onRead?.(source)
    return this.viewOf(user, current)
  }

  /** Starts polling, unless running or stopped for good. Reads call it. */
  start(): void {
    this.poller.start()
  }

  /** Stops for good; resolves once the list under way (if any) has ended. */
  async stop(): Promise<void> {
    this.unobserve()
    this.unfollowPods()
    this.targeted.close()
    this.lastStarts.close()
    await this.poller.stop()
  }

  /** A start is about to be sent: until it is settled, the server reads as starting. */
  starting(user: string, server: string, userOptions: Record<string, unknown>): () => void {
    return this.ownStarts.starting(user, server, userOptions)
  }

  /** A start or stop answered: read the user again, so the next read shows it. */
  async changed(user: string): Promise<void> {
    if (!this.poller.started) return
    // A failure marks the user unsure: the next read of it asks the hub (and fails if it must).
    await this.readUser(user).catch(ignore)
  }

  /** A pod of the user changed (null: any may have): read the user, or list when all may have. */
  private podChanged(user: string | null): void {
    if (!this.poller.hasListed) return
    if (user === null) {
      this.poller.listSoon()
      return
    }
    this.following.set(user, now() + (this.options.followPodMs ?? 10_000))
    void this.targeted.request(user)
  }

  /** After a targeted read: again while a pod changed lately and the hub shows a transition. */
  private followUp(user: string): void {
    const until = this.following.get(user)
    if (until === undefined) return
    const servers = Object.values(this.users.get(user)?.servers ?? {})
    if (now() < until && servers.some((server) => this.inTransition(server))) void this.targeted.request(user)
    else this.following.delete(user)
  }

  /**
   * Whether a read by name should ask the hub first: the server is starting or stopping (a
   * launch's cost), or unknown to the copy (it may have been started elsewhere a moment ago;
   * such reads share a replica-wide allowance, so clients asking for names that do not exist
   * cannot load the hub). Never more than once per `userReadGapMs` per user.
   */
  private worthReading(user: string, server: HubServer | undefined): boolean {
    if (now() - this.targeted.lastSentAt(user) < (this.options.userReadGapMs ?? 1000)) return false
    if (server) return this.inTransition(server)
    const second = Math.floor(now() / 1000)
    if (second !== this.unknownReads.second) this.unknownReads = { second, count: 0 }
    return this.unknownReads.count++ < (this.options.unknownServerReadsPerSecond ?? 5)
  }

  /** Starting or stopping, as the copy shows it. */
  private inTransition(server: HubServer | undefined): boolean {
    return !!server && (!!server.pending || (!server.ready && !server.stopped))
  }

  private viewOf(user: string, entry: Entry | undefined): UserServers | null {
    const starting = this.ownStarts.overlay(user, entry?.servers)
    if (starting) return { name: user, servers: starting }
    if (!entry) return null
    entry.view ??= { name: user, servers: entry.servers }
    return entry.view
  }

  /** Takes in a list sent at `asOf`; entries read alone since are newer and stay. */
  private merge(users: HubUser[], asOf: number): void {
    const listed = new Set<string>()
    for (const user of users) {
      listed.add(user.name)
      const entry = this.users.get(user.name)
      if (entry && entry.asOf > asOf) continue
      this.users.set(user.name, {
        servers: this.lastStarts.annotate(user.name, user.servers),
        asOf,
        active: true,
        lastReadAt: entry?.lastReadAt ?? Number.NEGATIVE_INFINITY,
      })
    }
    for (const [name, entry] of this.users) {
      if (listed.has(name) || !entry.active || entry.asOf > asOf) continue
      // Left the list: all its servers stopped (or were removed). Read it alone to know which.
      if (hasNamedServer(entry.servers)) this.readUser(name).catch(ignore)
      else this.forgetUser(name)
    }
  }

  /** Reads again the parked users read lately that were checked longest ago, a few per list. */
  private async checkParked(): Promise<void> {
    const perList = this.options.parkedChecksPerPoll ?? 1
    if (perList <= 0) return
    const since = now() - (this.options.watchMs ?? 60_000)
    const due: [string, Entry][] = []
    for (const item of this.users) {
      const [name, entry] = item
      if (!entry.active && entry.lastReadAt >= since && !this.userReads.has(name)) due.push(item)
    }
    due.sort(([, a], [, b]) => a.asOf - b.asOf)
    await Promise.all(due.slice(0, perList).map(([name]) => this.readUser(name).catch(ignore)))
  }

  /**
   * One user's read. The client shares reads under way and starts afresh after a change (a read
   * sent before a change would not show it), so this is the only way the copy asks for one user.
   */
  private readUser(name: string): Promise<void> {
    const asOf = now()
    this.counts.userReads++
    const read = this.hub.getUser(name).then(
      (user) => {
        this.poller.contact()
        this.apply(name, user, asOf)
        this.unsure.delete(name)
        // Read alone, a user shows how its stopped servers' starts ended from the first read on.
        return this.lastStarts.settled(name)
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
      servers: this.lastStarts.annotate(name, servers),
      asOf,
      active,
      lastReadAt: entry?.lastReadAt ?? Number.NEGATIVE_INFINITY,
    })
  }

  private forgetUser(name: string): void {
    this.users.delete(name)
    this.lastStarts.forget(name)
  }
}
