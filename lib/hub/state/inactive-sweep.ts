/**
 * Users that hold only stopped servers when the copy starts (or whose spawn failed between two
 * lists) are not in the active list: a sweep of `GET /users?state=inactive&include_stopped_servers=1`
 * finds them, one page at a time, at start and then every `intervalMs` (10 min).
 */
import { UpstreamError } from '../../core/errors.js'
import type { HubUser, JupyterHubClient } from '../client.js'
import type { ReflectorLogger } from './poller.js'

export interface InactiveSweepOptions {
  hub: Pick<JupyterHubClient, 'listUsersPage'>
  /** Time between two sweeps; default 600 000. */
  intervalMs?: number
  /** Time limit of a page; default 5000. */
  timeoutMs?: number
  log?: ReflectorLogger
  /** Each user of a page, and when the page was asked for. */
  onUser: (user: HubUser, asOf: number) => void
}

export class InactiveSweep {
  /** Pages read so far (for metrics). */
  pages = 0
  /** The next page of the sweep under way; null when none is. */
  private offset: number | null = null
  private nextSweepAt = 0

  constructor(private readonly options: InactiveSweepOptions) {}

  /** Reads the next page, if a sweep is under way or due. */
  async step(): Promise<void> {
    if (this.offset === null) {
      if (performance.now() < this.nextSweepAt) return
      this.offset = 0
    }
    const asOf = performance.now()
    try {
      const page = await this.options.hub.listUsersPage(
        'inactive',
        this.offset,
        this.options.timeoutMs ?? 5000,
      )
      this.pages++
      for (const user of page.users) this.options.onUser(user, asOf)
      this.offset = page.next
    } catch (err) {
      // Tried again with the next step, from the same page.
      const detail = err instanceof UpstreamError ? err.detail : (err as Error).message
      this.options.log?.warn({ upstream: 'JupyterHub', detail }, 'a page of the inactive users failed')
      return
    }
    if (this.offset === null) this.nextSweepAt = performance.now() + (this.options.intervalMs ?? 600_000)
  }
}
