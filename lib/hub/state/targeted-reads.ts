/**
 * Reads of one user asked for because something says that user changed (a pod event, a client
 * following a server that is starting or stopping), at most one per user per `minGapMs`: a
 * request that comes sooner is served by one read at the end of the gap, shared by every
 * request that came meanwhile. A read under way when a request comes may have been sent before
 * the change, so the request gets the next one.
 */
export interface TargetedReadsOptions {
  /** The read itself (shared with other readers of the user by the hub client). */
  read: (user: string) => Promise<void>
  /** Shortest time between the starts of two reads of one user; default 1000. */
  minGapMs?: number
}

interface PerUser {
  lastStartAt: number
  running?: Promise<void>
  /** The read that will serve the requests that came since `running` started. */
  next?: Promise<void>
}

const ignore = () => {}

export class TargetedReads {
  /** Reads sent so far (for metrics). */
  sent = 0
  private readonly users = new Map<string, PerUser>()
  private closed = false

  constructor(private readonly options: TargetedReadsOptions) {}

  close(): void {
    this.closed = true
  }

  /** When a read of the user was last sent (-Infinity: never). */
  lastSentAt(user: string): number {
    return this.users.get(user)?.lastStartAt ?? Number.NEGATIVE_INFINITY
  }

  /** Resolves once a read sent at or after this request has ended (failures are the copy's concern). */
  request(user: string): Promise<void> {
    let state = this.users.get(user)
    if (!state) {
      state = { lastStartAt: Number.NEGATIVE_INFINITY }
      this.users.set(user, state)
    }
    if (state.next) return state.next
    const gap = this.options.minGapMs ?? 1000
    const at = state.lastStartAt + gap
    if (!state.running && performance.now() >= at) return this.send(user, state)
    const current = state
    const next = (current.running ?? Promise.resolve())
      .then(() => sleep(at - performance.now()))
      .then(() => {
        current.next = undefined
        return this.closed ? undefined : this.send(user, current)
      })
    current.next = next
    return next
  }

  private send(user: string, state: PerUser): Promise<void> {
    state.lastStartAt = performance.now()
    this.sent++
    const running = this.options.read(user).catch(ignore)
    state.running = running
    void running.then(() => {
      if (state.running !== running) return
      state.running = undefined
      // Forgotten once idle, so the map holds only users read within the gap.
      if (!state.next) setTimeout(() => this.dropIfIdle(user, state), this.options.minGapMs ?? 1000).unref()
    })
    return running
  }

  private dropIfIdle(user: string, state: PerUser): void {
    if (!state.running && !state.next && this.users.get(user) === state) this.users.delete(user)
  }
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    if (ms <= 0) resolve()
    else setTimeout(resolve, ms).unref()
  })
