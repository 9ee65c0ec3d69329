import type { PodChanges } from '../hub/state/types.js'
import type { PodWaiting, ProgressStep, StepDetail } from '../progress/steps.js'

/**
 * What the service needs to know about a notebook server's pod, independent of
 * where it comes from (the Kubernetes API in production).
 */
export interface PodView {
  name: string
  /** `status.phase`: Pending, Running, Succeeded, Failed, Unknown. */
  phase: string
  /** All containers ready and no deletion timestamp. */
  ready: boolean
  /** The pod has a deletion timestamp. */
  terminating: boolean
  /** Phase Failed, or a container that cannot start (image pull failure, crash loop). */
  failed: boolean
  /** Why the pod is not ready yet, in words a person understands. */
  step?: string
  message?: string
  reason?: string
  /** Requests of the notebook container, in the units of the server options (the OpenAPI `Server` schema). */
  resources?: { cpu?: string; memory?: string; storage?: string; gpu?: string }
  annotations: Record<string, string>
  labels: Record<string, string>
}

/** A server as the pod lookup needs it: its name and, when the spawner recorded it, its pod's name. */
export interface ServerRef {
  name: string
  podName?: string
}

export interface PodInspector {
  /**
   * A number that changes whenever any pod does, while pods come from a watched copy; undefined
   * while each read asks the API. Lets callers reuse what they built from unchanged pods.
   */
  version?(): number | undefined
  /** The pods' changes as the hub users they belong to, while pods come from a watched copy. */
  changes?: PodChanges
  /** The pods of a user's servers, keyed by server name, read with one list call. */
  podsForUser(username: string, servers: ServerRef[]): Promise<Map<string, PodView>>
  /** Deletes a pod (grace period 30 s); resolves when the API accepted it or the pod is already gone. */
  deletePod(podName: string): Promise<void>
  /** Throws an UpstreamError when the Kubernetes API cannot be used. */
  ping(): Promise<void>
}

export interface LogRequest {
  username: string
  serverName: string
  podName?: string
  /** 0 means all lines. */
  maxLines: number
}

export interface LogSource {
  /** The upstream named in errors, e.g. "Kubernetes". */
  readonly upstream: string
  /** Log lines, oldest first. */
  readLogs(request: LogRequest): Promise<string[]>
}

/** The launch steps a server's pod has reached (the README's "Following a start"), oldest first. */
export interface PodLaunch {
  reached: { step: ProgressStep; detail: StepDetail }[]
  ready: boolean
  /** Why the pod cannot start, in words (image pull failure, crash loop, failed clone). */
  failure?: string
  /** What the pod waits for, kept to explain a later time-out. */
  waiting?: PodWaiting
}

export interface PodLaunchSource {
  /** The launch of a server's pod, or undefined while it has none. */
  podLaunch(
    username: string,
    server: ServerRef & { autosave?: string; resumed?: boolean },
  ): Promise<PodLaunch | undefined>
}
