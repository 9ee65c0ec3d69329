/**
 * The full list of active users (`GET /users?state=active&include_stopped_servers=1`, paged) on
 * a schedule the hub can afford, and whether the hub answers at all.
 *
 * The list's cost grows with the number of active servers (about 0.09 s of hub CPU at 500, 0.85 s
 * at 5,000), so its interval follows what each list actually took: at least `listCostShare`
 * (4%) of the hub's time between two lists, never more often than `intervalMs` (1 s with the hub
 * alone; a rare resync when pod events say what changed). So a list comes every second up to a
 * few hundred active users, every 2 s at about a thousand, and more rarely beyond.
 *
 * Whether the hub answers is told by anything that arrived (a list page, a user read) and, when
 * nothing did for a second, by `GET /hub/api/` (the version: no database, no list). Reads wait
 * for the first list, and fail with an UpstreamError naming JupyterHub (503) once the hub has not
 * answered for longer than `maxAgeMs`, instead of answering older state.
 */
import { UpstreamError } from '../../core/errors.js'
import type { HubUser, JupyterHubClient } from '../client.js'

export interface ReflectorLogger {
  warn(obj: object, msg: string): void
  info?(obj: object, msg: string): void
}

export interface ActiveListPollerOptions {
  hub: Pick<JupyterHubClient, 'listActiveUsers' | 'ping'>
  /** Shortest time between the starts of two lists (asked before each); default 1000. */
  intervalMs?: number | (() => number)
  /** Share of the hub's time the lists may take (a list's duration over the interval); default 0.04. */
  listCostShare?: number
  /** How often the hub's liveness and the copy's chores are looked at; default 1000. */
  tickMs?: number
  /** How long without an answer before reads fail; default 2000. */
  maxAgeMs?: number
  /** Time limit of each page of the list; default 5000. */
  timeoutMs?: number
  log?: ReflectorLogger
  /** A complete list, sent at `asOf`. */
  onList: (users: HubUser[], asOf: number) => void
  /** Each tick while the hub answers (the copy's smaller chores). */
  onTick?: () => Promise<void>
}

const now = () => performance.now()
/** How many pages' durations tell what a page costs. */
const RECENT_PAGES = 30
const detailOf = (err: unknown) => (err instanceof UpstreamError ? err.detail : (err as Error)?.message)

export class ActiveListPoller {
  /** Complete lists, their pages, lists that failed, and probes (they only grow). */
  polls = 0
  pages = 0
  failures = 0
  probes = 0
  /** What a complete list costs the hub, in ms, as far as can be told; drives the interval. */
  listMs = 0
  private recentPageMs: number[] = []
  private running = false
  private closed = false
  private loaded = false
  private startedAt = 0
  /** When the hub last answered anything. */
  private lastContactAt = 0
  /** Why the hub is not answering (undefined while it is). */
  private failure: unknown
  /** The list's own failure: a wrong answer (e.g. a token without the scopes) stays a 502. */
  private listFailure: unknown
  /** A list asked for before the regular one (the first, a retry, after a gap): when. */
  private listAt = 0
  private lastListStart = Number.NEGATIVE_INFINITY
  private loop?: Promise<void>
  private wake?: () => void
  private firstListed!: () => void
  private readonly firstList = new Promise<void>((resolve) => {
    this.firstListed = resolve
  })

  constructor(private readonly options: ActiveListPollerOptions) {}

  get started(): boolean {
    return this.running
  }

  get hasListed(): boolean {
    return this.loaded
  }

  /** The time between two lists now, in ms. */
  get intervalMs(): number {
    const { intervalMs = 1000 } = this.options
    const floor = typeof intervalMs === 'function' ? intervalMs() : intervalMs
    return Math.max(floor, this.budgetMs)
  }

  /** The shortest interval the budget allows, from what the lists take. */
  private get budgetMs(): number {
    return this.listMs / (this.options.listCostShare ?? 0.04)
  }

  /** When the next list is due. */
  private get nextListAt(): number {
    return Math.min(this.listAt, this.lastListStart + this.intervalMs)
  }

  /** Starts polling, unless running or stopped for good. */
  start(): void {
    if (this.running || this.closed) return
    this.running = true
    this.startedAt = now()
    this.loop = this.run()
  }

  /** Stops polling for good; resolves once the call under way (if any) has ended. */
  async stop(): Promise<void> {
    this.closed = true
    this.running = false
    this.wake?.()
    await this.loop
  }

  /** The hub answered something (e.g. a user read): it is there. */
  contact(): void {
    this.lastContactAt = now()
    if (this.failure !== undefined && this.listFailure === undefined) this.recovered()
  }

  /** Asks for a list as soon as the budget allows (e.g. after a pod watch lost events). */
  listSoon(): void {
    this.listAt = Math.min(this.listAt, this.lastListStart + this.budgetMs)
    this.wake?.()
  }

  /** Resolves once the first list arrived; throws the 503 when it does not come in time. */
  async waitForFirstList(): Promise<void> {
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

  /** Throws the 503 (or the list's 502) when the hub has not answered for longer than `maxAgeMs`. */
  assertCurrent(): void {
    if (this.listFailure instanceof UpstreamError && this.listFailure.failure === 'bad_response') {
      throw this.listFailure
    }
    if (this.failure !== undefined && now() - this.lastContactAt > this.maxAgeMs) throw this.unavailable()
  }

  private get maxAgeMs(): number {
    return this.options.maxAgeMs ?? 2000
  }

  private unavailable(): UpstreamError {
    const failure = this.listFailure ?? this.failure
    if (failure instanceof UpstreamError && failure.failure === 'bad_response') return failure
    const since = Math.round(now() - Math.max(this.startedAt, this.lastContactAt))
    const why = failure instanceof Error ? `: ${detailOf(failure)}` : ''
    return new UpstreamError('JupyterHub', 'unavailable', `no answer from the hub for ${since} ms${why}`)
  }

  private async run(): Promise<void> {
    const tickMs = this.options.tickMs ?? 1000
    while (this.running) {
      const began = now()
      if (began >= this.nextListAt) {
        await this.list()
      } else if (began - this.lastContactAt >= tickMs) {
        await this.probe()
      }
      if (!this.running) break
      if (this.failure === undefined) await this.options.onTick?.()
      const wait = Math.min(began + tickMs, this.nextListAt) - now()
      if (wait > 0) await this.sleep(wait)
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      // Stopped while a call was under way: no sleep for stop() to wake from.
      if (!this.running) return resolve()
      const timer = setTimeout(done, ms)
      // A replica that was never closed must not be kept alive by its poller.
      timer.unref()
      this.wake = done
      function done() {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private async list(): Promise<void> {
    const asOf = now()
    this.lastListStart = asOf
    const pageMs: number[] = []
    let pageStart = asOf
    try {
      const users = await this.options.hub.listActiveUsers({
        timeoutMs: this.options.timeoutMs ?? 5000,
        onPage: () => {
          const arrived = now()
          pageMs.push(arrived - pageStart)
          pageStart = arrived
          this.lastContactAt = arrived
          this.pages++
        },
      })
      this.noteCost(pageMs)
      this.options.onList(users, asOf)
      this.polls++
      this.listAt = Number.POSITIVE_INFINITY
      this.listFailure = undefined
      if (this.failure !== undefined) this.recovered()
      if (!this.loaded) {
        this.loaded = true
        this.firstListed()
      }
    } catch (err) {
      this.failures++
      // Tried again at the next tick.
      this.listAt = now() + (this.options.tickMs ?? 1000)
      this.listFailure = err ?? new Error('the user list failed')
      this.failed(err, 'the user list failed')
    }
  }

  /**
   * What a list costs the hub: its pages times the least time a full page took lately. A page
   * that waited (behind other requests at the hub, or for this process's own event loop) took
   * longer than it cost, and must not stretch the interval; a hub that grew makes every page
   * longer and every list have more pages, and the interval follows.
   */
  private noteCost(pageMs: number[]): void {
    // A list's last page is partly full, unless it is the only one.
    const full = pageMs.length > 1 ? pageMs.slice(0, -1) : pageMs
    this.recentPageMs = [...this.recentPageMs, ...full].slice(-RECENT_PAGES)
    if (this.recentPageMs.length > 0) this.listMs = Math.min(...this.recentPageMs) * pageMs.length
  }

  private async probe(): Promise<void> {
    this.probes++
    try {
      await this.options.hub.ping()
      this.contact()
    } catch (err) {
      this.failed(err, 'the hub does not answer')
    }
  }

  private failed(err: unknown, what: string): void {
    if (this.failure === undefined) {
      this.options.log?.warn(
        { upstream: 'JupyterHub', detail: detailOf(err) },
        `${what}; trying again every second`,
      )
    }
    this.failure = err ?? new Error(what)
  }

  private recovered(): void {
    this.options.log?.info?.({ upstream: 'JupyterHub' }, 'the hub answers again')
    this.failure = undefined
    // What changed meanwhile is unknown: a list as soon as the budget allows.
    if (!this.loaded || this.listFailure !== undefined) this.listAt = now()
    else this.listSoon()
  }
}
