/** The shapes the copy of the hub's state shares with its users (lib/hub/state/reflector.ts). */
import type { HubReadSource } from '../../core/metrics.js'
import type { HubServer, JupyterHubClient } from '../client.js'
import type { ReflectorLogger } from './poller.js'

/** Pod changes as the hub users they belong to (lib/kubernetes/pod-reflector.ts's events). */
export interface PodChanges {
  /** Calls `listener` with the user of each pod that changes; null when any may have (a relist). */
  onUserPodsChanged(listener: (user: string | null) => void): () => void
  /** Whether changes are followed right now (the watch is current). */
  readonly watching: boolean
}

/** A user's servers as the copy holds them (never auth_state). Treat as read-only. */
export interface UserServers {
  name: string
  servers: Readonly<Record<string, HubServer>>
}

/** Counters for metrics; they only grow. */
export interface HubReflectorStats {
  /** Reads answered from the copy alone. */
  stateReads: number
  /** Reads that waited for a hub call (the first list, or one user's read). */
  hubReads: number
  /** Complete lists, their pages, and lists that failed. */
  polls: number
  pages: number
  pollFailures: number
  /** One-user reads: after a start or stop, a user leaving the list, parked users checked. */
  userReads: number
  /** Pages of the inactive users read by sweeps. */
  sweepPages: number
  /** Progress streams asked how a stopped server's last start ended. */
  lastStartChecks: number
  /** Reads of one user because a pod changed or a client follows a server in transition. */
  targetedReads: number
  /** `GET /hub/api/` asked whether the hub answers. */
  probes: number
  /** Time between two full lists now, and what the last one took (ms). */
  listIntervalMs: number
  listMs: number
}

export interface HubReflectorOptions {
  hub: Pick<
    JupyterHubClient,
    'listActiveUsers' | 'listUsersPage' | 'getUser' | 'observe' | 'lastStart' | 'ping'
  >
  /** Shortest time between the starts of two lists with the hub alone; default 1000. */
  pollIntervalMs?: number
  /** Share of the hub's time the lists may take; default 0.04 (README "Performance"). */
  listCostShare?: number
  /** The servers' pods' changes, when Kubernetes is configured. */
  podChanges?: PodChanges | null
  /** Shortest time between two full lists while pods are watched; default 120 000. */
  resyncIntervalMs?: number
  /** Reads by name of servers the copy does not hold that may ask the hub, per second; default 5. */
  unknownServerReadsPerSecond?: number
  /** Shortest time between two targeted reads of one user; default 1000. */
  userReadGapMs?: number
  /** How long after a pod's change its user is read again while a server is in transition; default 10 000. */
  followPodMs?: number
  /** How long without an answer to the list before reads fail; default 2000. */
  maxAgeMs?: number
  /** Time limit of each page of the list; default 5000. */
  pollTimeoutMs?: number
  /** Parked users (stopped servers only) read again per list, of those read lately; default 1. */
  parkedChecksPerPoll?: number
  /** How long after its last read a parked user is kept current; default 60 000. */
  watchMs?: number
  /** Time between two sweeps of the inactive users (one page per list); default 600 000. */
  sweepIntervalMs?: number
  /** Time limit of asking how a stopped server's last start ended; default 2000. */
  lastStartTimeoutMs?: number
  /** Wait before asking that again when the hub did not tell; default 30 000. */
  lastStartRetryMs?: number
  /** How many of those questions may be under way at once; default 4. */
  lastStartConcurrency?: number
  log?: ReflectorLogger
  /** Told of every read and where it was answered from (for metrics). */
  onRead?: (source: HubReadSource) => void
}
