/** The core/v1 objects the Kubernetes stand-in serves, as JSON; only the fields it reads are typed. */
export type Json = Record<string, unknown>

export interface ContainerStatusLike {
  name: string
  state?: { waiting?: { reason?: string }; running?: Json; terminated?: { containerID?: string } }
  lastState?: { terminated?: { containerID?: string } }
  [key: string]: unknown
}

/** The object metadata every kind the stand-in stores carries. */
export interface StandInMetadata {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  [key: string]: unknown
}

/** A pod as JSON; only the fields the stand-in reads are typed. */
export interface StandInPod {
  metadata: StandInMetadata & { deletionTimestamp?: string; deletionGracePeriodSeconds?: number }
  spec?: {
    nodeName?: string
    containers?: Array<{ name: string; [key: string]: unknown }>
    initContainers?: Array<{ name: string; [key: string]: unknown }>
    [key: string]: unknown
  }
  status?: {
    phase?: string
    containerStatuses?: ContainerStatusLike[]
    initContainerStatuses?: ContainerStatusLike[]
    [key: string]: unknown
  }
  [key: string]: unknown
}

/** A PersistentVolumeClaim as JSON; only the metadata is read. */
export interface StandInClaim {
  metadata: StandInMetadata
  [key: string]: unknown
}

/** An event as JSON (core/v1 `Event`). */
export interface StandInEvent {
  metadata: { name: string; namespace?: string; [key: string]: unknown }
  involvedObject: { kind?: string; name?: string; namespace?: string; uid?: string; [key: string]: unknown }
  [key: string]: unknown
}
