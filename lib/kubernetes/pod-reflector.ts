/**
 * A local copy of the namespace's notebook pods, kept current with a list and then a watch
 * (the informer pattern), so that reading a user's pods costs no API call.
 *
 * The watch is re-opened from the last resourceVersion every `watchSeconds` (the server ends
 * it), which bounds how long a silently dead connection can leave the copy stale; a 410 Gone
 * lists again. While the copy is not known to be current (before the first list, after a
 * failure, until the watch is back), `synced` is false and callers ask the API directly.
 */
import type { CoreV1Api, V1Pod, Watch } from '@kubernetes/client-node'
import type { UpstreamObserver } from '../core/metrics.js'
import { httpStatus, observeCall, toUpstreamError } from './errors.js'
import { LIST_PODS } from './operations.js'

/** The logger subset used (pino's signature), so the class stays free of Fastify. */
export interface ReflectorLogger {
  warn(obj: object, msg: string): void
  info?(obj: object, msg: string): void
}

export interface PodReflectorOptions {
  api: CoreV1Api
  watch: Watch
  namespace: string
  /** Which pods to keep, e.g. `renku.io/username` (all pods that have the label). */
  labelSelector: string
  log?: ReflectorLogger
  /** How long one watch request lasts before it is re-opened; default 300. */
  watchSeconds?: number
  /** First retry delay after a failure, doubled up to 30 s; default 1000. */
  retryMs?: number
  /** Told of each list (the long-lived watches are not calls to time). */
  observe?: UpstreamObserver
}

interface WatchEvent {
  metadata?: { name?: string; resourceVersion?: string }
  code?: number
}

export class PodReflector {
  private readonly options: PodReflectorOptions
  private readonly pods = new Map<string, V1Pod>()
  private readonly listeners = new Set<(pod: V1Pod | null) => void>()
  private resourceVersion = ''
  private changes = 0
  private current = false
  private stopped = true
  private controller?: AbortController
  private wake?: () => void
  private readonly firstSync: Promise<void>
  private markSynced!: () => void

  constructor(options: PodReflectorOptions) {
    this.options = options
    this.firstSync = new Promise((resolve) => {
      this.markSynced = resolve
    })
  }

  /** True while the copy follows the cluster. */
  get synced(): boolean {
    return this.current
  }

  /** Resolves once the copy has been current for the first time. */
  whenSynced(): Promise<void> {
    return this.firstSync
  }

  /** A number that changes whenever the copy does, so readers can tell a view built from it is current. */
  get version(): number {
    return this.changes
  }

  /**
   * Calls `listener` with each pod the watch sees change (as it is now; as last seen for a
   * deletion), and with null after a list (any pod may have changed unseen). Returns the removal.
   */
  subscribe(listener: (pod: V1Pod | null) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private notify(pod: V1Pod | null): void {
    for (const listener of this.listeners) listener(pod)
  }

  /** The pods, as last seen. */
  list(): V1Pod[] {
    return [...this.pods.values()]
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    void this.run()
  }

  stop(): void {
    this.stopped = true
    this.current = false
    this.controller?.abort()
    this.wake?.()
  }

  private async run(): Promise<void> {
    let failures = 0
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist()
        await this.follow()
        failures = 0
      } catch (error) {
        if (this.stopped) break
        this.current = false
        if (httpStatus(error) === 410 || (error as { statusCode?: unknown })?.statusCode === 410) {
          this.resourceVersion = ''
          continue
        }
        failures++
        const delay = Math.min(30_000, (this.options.retryMs ?? 1000) * 2 ** (failures - 1))
        const detail = toUpstreamError(error, 'watch pods').detail
        this.options.log?.warn({ upstream: 'Kubernetes', detail, retryInMs: delay }, 'the pod watch failed')
        await this.sleep(delay)
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  private async relist(): Promise<void> {
    const { api, namespace, labelSelector, observe } = this.options
    const list = await observeCall(observe, LIST_PODS, () =>
      api.listNamespacedPod({ namespace, labelSelector }),
    )
    this.pods.clear()
    for (const pod of list.items) if (pod.metadata?.name) this.pods.set(pod.metadata.name, pod)
    this.changes++
    this.resourceVersion = list.metadata?.resourceVersion ?? ''
    this.notify(null)
  }

  /** Resolves when the watch ends normally (or on 410, after forgetting the resourceVersion); rejects on failure. */
  private follow(): Promise<void> {
    const { watch, namespace, labelSelector, watchSeconds = 300 } = this.options
    return new Promise((resolve, reject) => {
      let finished = false
      let expired = false
      const onEvent = (type: string, object: WatchEvent) => {
        if (type === 'ERROR') {
          if (object.code === 410) expired = true
          return
        }
        const name = object.metadata?.name
        if (type !== 'BOOKMARK' && name) {
          if (type === 'DELETED') this.pods.delete(name)
          else this.pods.set(name, object as V1Pod)
          this.changes++
          this.notify(object as V1Pod)
        }
        if (object.metadata?.resourceVersion) this.resourceVersion = object.metadata.resourceVersion
      }
      const onDone = (error: unknown) => {
        finished = true
        this.controller = undefined
        if (expired) {
          // Changes since are lost: until the new list, the copy cannot be trusted.
          this.current = false
          this.resourceVersion = ''
          resolve()
        } else if (error && !this.stopped) {
          reject(error)
        } else {
          resolve()
        }
      }
      const query = {
        labelSelector,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: watchSeconds,
      }
      watch.watch(`/api/v1/namespaces/${namespace}/pods`, query, onEvent, onDone).then((controller) => {
        if (finished) return
        this.controller = controller
        if (this.stopped) controller.abort()
        // The watch answered 200: from here on, changes arrive as they happen.
        this.current = true
        this.markSynced()
      }, reject)
    })
  }
}
