/**
 * One watch per server start and replica, shared by every client following it (fan-out): one
 * hub progress stream and, with Kubernetes, one look at the pod copy per interval, whatever
 * the number of clients. The watch keeps the events it sent, so a client that joins late or
 * resumes gets them from memory; it stops, closing the hub stream, when its last client goes.
 */
import type { ServerObject } from '../../schemas/servers.js'
import type { UpstreamError } from '../core/errors.js'
import type { JupyterHubClient } from '../hub/client.js'
import { HubNotStarting } from '../hub/progress-stream.js'
import {
  eventId,
  failureCause,
  isFinal,
  type PodWaiting,
  type ProgressEvent,
  type ProgressStep,
  progressEvent,
  type StepDetail,
  startKeyOf,
  stepIndex,
  stepOfHubMessage,
} from '../progress/steps.js'
import type { PodLaunchSource } from './pods.js'

export interface SentEvent {
  id: string
  index: number
  event: ProgressEvent
}

export interface WatchLogger {
  warn(obj: object, msg: string): void
}

export interface LaunchWatchesOptions {
  hub: Pick<JupyterHubClient, 'progressEvents'>
  servers: { follow(user: string, name: string): Promise<ServerObject | undefined> }
  pods: PodLaunchSource | null
  /** How often the pod copy is looked at; default 1000 ms. */
  podPollMs?: number
  /** Wait before asking the hub again after its stream ended without a last event; default 1000 ms. */
  retryMs?: number
  log?: WatchLogger
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done() {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })

/** The progress of one start of one server, as this replica follows it. */
export class LaunchWatch {
  readonly startKey: number
  readonly sent: SentEvent[] = []
  private last = -1
  private readonly listeners = new Set<(event: SentEvent) => void>()
  private readonly controller = new AbortController()
  private waiting?: PodWaiting
  /** Settles after the first look at the pod, which may explain the wait better than the hub. */
  private readonly firstPodLook: Promise<void>
  private podLooked: () => void = () => {}

  constructor(
    private readonly options: LaunchWatchesOptions,
    private readonly user: string,
    private readonly server: ServerObject,
    private readonly onEnd: () => void,
  ) {
    this.startKey = startKeyOf(server.started)
    this.firstPodLook = options.pods
      ? new Promise((resolve) => {
          this.podLooked = resolve
        })
      : Promise.resolve()
    void this.followHub()
    if (options.pods) void this.followPod(options.pods)
  }

  get done(): boolean {
    return this.sent.some((sent) => isFinal(sent.event.step))
  }

  /**
   * Calls `listener` with each event after step number `after`: those already sent, at once,
   * then the rest as they come. Returns the unsubscribe function; the last one out stops the watch.
   */
  subscribe(after: number, listener: (event: SentEvent) => void): () => void {
    for (const sent of this.sent) if (sent.index > after) listener(sent)
    if (this.done) return () => {}
    const filtered = (sent: SentEvent) => {
      if (sent.index > after) listener(sent)
    }
    this.listeners.add(filtered)
    return () => {
      this.listeners.delete(filtered)
      if (this.listeners.size === 0) this.stop()
    }
  }

  private stop(): void {
    if (this.controller.signal.aborted) return
    this.controller.abort()
    this.podLooked()
    this.onEnd()
  }

  /** Sends the step unless it, or a later one, was sent already. */
  private advance(step: ProgressStep, detail: StepDetail): void {
    const index = stepIndex(step)
    if (this.done || index <= this.last) return
    // `ready` and `failed` share the last place: whichever comes first ends the stream.
    this.last = isFinal(step) ? Number.POSITIVE_INFINITY : index
    const sent = { id: eventId(this.startKey, step), index, event: progressEvent(step, detail) }
    this.sent.push(sent)
    for (const listener of [...this.listeners]) listener(sent)
    if (isFinal(step)) {
      this.listeners.clear()
      this.stop()
    }
  }

  private ready(): void {
    this.advance('ready', { message: 'Your server is ready.', ready: true, url: this.server.url })
  }

  private fail(cause: string): void {
    this.advance('failed', { message: cause, failed: true })
  }

  private async followHub(): Promise<void> {
    const { signal } = this.controller
    const { hub, servers, retryMs = 1000, log } = this.options
    while (!signal.aborted) {
      try {
        const events = hub.progressEvents(this.user, this.server.name, signal)
        for await (const event of events) {
          await this.firstPodLook
          if (event.ready) return this.ready()
          if (event.failed) return this.fail(failureCause(event.message, this.waiting))
          const mapped = stepOfHubMessage(event)
          if (mapped) this.advance(mapped.step, mapped.detail)
        }
      } catch (err) {
        if (!(err instanceof HubNotStarting)) {
          log?.warn(
            { upstream: 'JupyterHub', detail: (err as UpstreamError).detail },
            'progress stream failed',
          )
        }
      }
      if (signal.aborted) return
      // The hub ended without a last event, or has no start to report: what is the server now?
      let now: ServerObject | undefined
      try {
        now = await servers.follow(this.user, this.server.name)
      } catch (err) {
        log?.warn({ upstream: 'JupyterHub', detail: (err as UpstreamError).detail }, 'server read failed')
        await sleep(retryMs, signal)
        continue
      }
      if (signal.aborted) return
      if (!now || startKeyOf(now.started) !== this.startKey) {
        return this.fail('The server was stopped before it was ready.')
      }
      if (now.status.state === 'running') return this.ready()
      if (now.status.state !== 'starting') {
        return this.fail(now.status.message ?? 'The server stopped before it was ready.')
      }
      await sleep(retryMs, signal)
    }
  }

  private async followPod(pods: PodLaunchSource): Promise<void> {
    const { signal } = this.controller
    const podName = this.server.state.pod_name
    const ref = {
      name: this.server.name,
      ...(typeof podName === 'string' && { podName }),
      ...(this.server.annotations['renku.io/autosave'] && {
        autosave: this.server.annotations['renku.io/autosave'],
      }),
      ...(this.server.annotations['renku.io/volume'] === 'resumed' && { resumed: true }),
    }
    while (!signal.aborted) {
      try {
        const launch = await pods.podLaunch(this.user, ref)
        if (signal.aborted) return
        if (launch) {
          for (const { step, detail } of launch.reached) this.advance(step, detail)
          if (launch.failure) return this.fail(launch.failure)
          this.waiting = launch.waiting
        }
      } catch (err) {
        // The hub's stream still tells the start; the pod only adds detail.
        this.options.log?.warn(
          { upstream: 'Kubernetes', detail: (err as UpstreamError).detail ?? String(err) },
          'pod progress unavailable',
        )
      }
      this.podLooked()
      await sleep(this.options.podPollMs ?? 1000, signal)
    }
  }
}

/** The watches of this replica, one per server start being followed. */
export class LaunchWatches {
  private readonly watches = new Map<string, LaunchWatch>()

  constructor(private readonly options: LaunchWatchesOptions) {}

  /** How many starts are being followed (each costs one hub stream). */
  get size(): number {
    return this.watches.size
  }

  /** The watch of this start of the server, joined if another client follows it already. */
  watch(user: string, server: ServerObject): LaunchWatch {
    const key = JSON.stringify([user, server.name, startKeyOf(server.started)])
    const existing = this.watches.get(key)
    if (existing && !existing.done) return existing
    const watch = new LaunchWatch(this.options, user, server, () => {
      if (this.watches.get(key) === watch) this.watches.delete(key)
    })
    this.watches.set(key, watch)
    return watch
  }
}
