/**
 * How each stopped named server's last start ended, asked once per stop: the first event of the
 * hub's progress stream tells a failed spawn from a server that did start and was stopped later
 * (`JupyterHubClient.lastStart`). A few questions at a time, so a burst of stops (a culler's
 * round) cannot flood the hub; one the hub did not answer is asked again after `retryMs`.
 */
import { UpstreamError } from '../../core/errors.js'
import type { HubServer, JupyterHubClient, LastStart } from '../client.js'
import type { ReflectorLogger } from './poller.js'

export interface LastStartChecksOptions {
  hub: Pick<JupyterHubClient, 'lastStart'>
  /** Time limit of one question; default 2000. */
  timeoutMs?: number
  /** Wait before asking again when the hub did not tell; default 30 000. */
  retryMs?: number
  /** How many questions may be under way at once; default 4. */
  concurrency?: number
  log?: ReflectorLogger
  /** Told when an answer arrives for a stop the copy may still hold. */
  onAnswer: (user: string, server: string, stop: string | null, result: LastStart) => void
}

/** What is known of how a stopped server's last start ended, for one stop of it. */
interface Check {
  /** The stop asked about: the stopped server's `last_activity` (the hub sets it on each stop). */
  stop: string | null
  result?: LastStart
  /** The question under way. */
  asking?: Promise<void>
  /** When the hub did not tell: not asked again before then. */
  retryAt?: number
}

const now = () => performance.now()

export class LastStartChecks {
  /** Questions asked so far (for metrics). */
  asked = 0
  private readonly checks = new Map<string, Map<string, Check>>()
  private running = 0
  private readonly queue: (() => void)[] = []
  private closed = false

  constructor(private readonly options: LastStartChecksOptions) {}

  close(): void {
    this.closed = true
  }

  forget(user: string): void {
    this.checks.delete(user)
  }

  /**
   * The servers to hold: each stopped named server with how its last start ended, when known
   * for this stop; asks the hub about the stops not known yet.
   */
  annotate(user: string, servers: Record<string, HubServer>): Record<string, HubServer> {
    const known = this.checks.get(user)
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
        this.ask(user, server)
      }
    }
    for (const name of known?.keys() ?? []) if (!(name in servers)) known?.delete(name)
    if (known?.size === 0) this.checks.delete(user)
    return held
  }

  /** Settles once the questions under way about the user's stopped servers are answered. */
  async settled(user: string): Promise<void> {
    await Promise.all([...(this.checks.get(user)?.values() ?? [])].map((check) => check.asking))
  }

  /** Asks the hub once per stop (unless asked lately without an answer). */
  private ask(user: string, server: HubServer): void {
    let known = this.checks.get(user)
    const current = known?.get(server.name)
    if (
      current?.stop === server.last_activity &&
      (current.asking || (current.retryAt !== undefined && now() < current.retryAt))
    ) {
      return
    }
    if (!known) {
      known = new Map()
      this.checks.set(user, known)
    }
    const check: Check = { stop: server.last_activity }
    known.set(server.name, check)
    const { hub, timeoutMs = 2000, retryMs = 30_000, log } = this.options
    check.asking = this.limited(async () => {
      if (this.closed || this.checks.get(user)?.get(server.name) !== check) return
      this.asked++
      return hub.lastStart(user, server.name, timeoutMs)
    }).then(
      (result) => {
        check.asking = undefined
        if (!result) {
          check.retryAt = now() + retryMs
          return
        }
        if (this.checks.get(user)?.get(server.name) !== check) return
        check.result = result
        this.options.onAnswer(user, server.name, check.stop, result)
      },
      (err: unknown) => {
        check.asking = undefined
        check.retryAt = now() + retryMs
        const detail = err instanceof UpstreamError ? err.detail : (err as Error).message
        log?.warn(
          { upstream: 'JupyterHub', detail },
          'could not tell how a stopped server’s last start ended',
        )
      },
    )
  }

  /** Runs `task` when fewer than `concurrency` others run. */
  private async limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= (this.options.concurrency ?? 4)) {
      await new Promise<void>((resolve) => this.queue.push(resolve))
    } else {
      this.running++
    }
    try {
      return await task()
    } finally {
      const next = this.queue.shift()
      if (next) next()
      else this.running--
    }
  }
}
