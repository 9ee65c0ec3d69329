/**
 * The full list of active users (`GET /users?state=active&include_stopped_servers=1`, paged), on
 * a timer, and whether the hub answers: reads wait for the first list, and fail with an
 * UpstreamError naming JupyterHub (503) once the list has failed and nothing arrived for longer
 * than `maxAgeMs`, instead of answering older state. A list that is merely slow (a busy hub) is
 * waited out, up to its time limit.
 */
import { UpstreamError } from '../../core/errors.js'
import type { HubUser, JupyterHubClient } from '../client.js'

export interface ReflectorLogger {
  warn(obj: object, msg: string): void
  info?(obj: object, msg: string): void
}

export interface ActiveListPollerOptions {
  hub: Pick<JupyterHubClient, 'listActiveUsers'>
  /** Time between the starts of two lists; default 1000. */
  intervalMs?: number
  /** How long without an answer before reads fail; default 2000. */
  maxAgeMs?: number
  /** Time limit of each page of the list; default 5000. */
  timeoutMs?: number
  log?: ReflectorLogger
  /** A complete list, sent at `asOf`. */
  onList: (users: HubUser[], asOf: number) => void
  /** After each list that went through (the copy's smaller chores). */
  afterList?: () => Promise<void>
}

const now = () => performance.now()

export class ActiveListPoller {
  /** Complete lists, their pages, and lists that failed (they only grow). */
  polls = 0
  pages = 0
  failures = 0
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

  constructor(private readonly options: ActiveListPollerOptions) {}

  get started(): boolean {
    return this.running
  }

  get hasListed(): boolean {
    return this.loaded
  }

  /** Starts polling, unless running or stopped for good. */
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
    this.wake?.()
    await this.loop
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

  /** Throws the 503 when the list failed and nothing arrived for longer than `maxAgeMs`. */
  assertCurrent(): void {
    if (this.failure !== undefined && now() - this.lastContactAt > this.maxAgeMs) throw this.unavailable()
  }

  private get maxAgeMs(): number {
    return this.options.maxAgeMs ?? 2000
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
      if (this.failure === undefined) await this.options.afterList?.()
      const wait = (this.options.intervalMs ?? 1000) - (now() - began)
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
      const users = await this.options.hub.listActiveUsers({
        timeoutMs: this.options.timeoutMs ?? 5000,
        onPage: () => {
          this.lastContactAt = now()
          this.pages++
        },
      })
      this.options.onList(users, asOf)
      this.polls++
      if (this.failure !== undefined)
        this.options.log?.info?.({ upstream: 'JupyterHub' }, 'the user list answers again')
      this.failure = undefined
      if (!this.loaded) {
        this.loaded = true
        this.firstListed()
      }
    } catch (err) {
      this.failures++
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
}
