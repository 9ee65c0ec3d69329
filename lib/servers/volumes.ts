/**
 * Session volumes: a volume per server that outlives it (README "Session volumes"). The store
 * (Kubernetes PersistentVolumeClaims, or the local stack's directories) is a port; the rules —
 * what is listed, when a volume may be deleted, the retention sweep — live here, once.
 */
import type { ServerObject } from '../../schemas/servers.js'
import { ApiError, type Upstream } from '../core/errors.js'

/** One kept volume, as a store reads it. */
export interface SessionVolume {
  /** The store's own name for it (the PVC's name, the directory). */
  id: string
  /** The hub user and the server the volume belongs to. */
  user: string
  server: string
  /** The launch that created it. */
  namespace: string
  project: string
  branch: string
  commitSha: string
  /** When its server was last seen stopped (ISO 8601); null while it runs or before anyone noticed. */
  stoppedAt: string | null
  /** Whether the store itself sees it in use (a pod mounts the claim). */
  inUse: boolean
}

/** Where the volumes are: the Kubernetes API or the local stack's directories. */
export interface VolumeStore {
  /** Named in errors: "Kubernetes", "the local volumes". */
  readonly upstream: Upstream
  /** The user's volumes. */
  listForUser(user: string): Promise<SessionVolume[]>
  /** Every session volume (the retention sweep). */
  listAll(): Promise<SessionVolume[]>
  /** Deletes it; one already gone is no error. */
  delete(volume: SessionVolume): Promise<void>
  /** Records when its server was seen stopped (`null` clears it, when a server uses it again). */
  setStoppedAt(volume: SessionVolume, at: string | null): Promise<void>
}

/** What the autosave list shows of a kept volume (the original service's `pvs: true` entries). */
export interface KeptVolume {
  /** The server name: what `DELETE …/autosave/<name>` takes. */
  name: string
  branch: string
  /** The launch's commit, 7 characters. */
  commit: string
  /** When its server stopped, ISO 8601. */
  date: string
  pvs: true
}

export interface SessionVolumesOptions {
  store: VolumeStore
  /** The user's server as the service shows it, or undefined when there is none. */
  server(user: string, name: string): Promise<ServerObject | undefined>
  /** How long a stopped server's volume is kept, ms. */
  retentionMs: number
  now?: () => Date
}

/** A server in these states has its volume mounted, or is about to. */
const busyStates = new Set(['starting', 'running', 'stopping'])

export interface SweepResult {
  deleted: string[]
  marked: string[]
  kept: number
}

/** GitLab paths are case-insensitive. */
function sameProject(volume: SessionVolume, namespace: string, project: string): boolean {
  return (
    volume.project.toLowerCase() === project.toLowerCase() &&
    volume.namespace.toLowerCase() === namespace.toLowerCase()
  )
}

export class SessionVolumes {
  constructor(private readonly options: SessionVolumesOptions) {}

  get upstream(): string {
    return this.options.store.upstream
  }

  private now(): Date {
    return this.options.now?.() ?? new Date()
  }

  /** Whether the volume's server is running, starting or stopping (by the hub or the store). */
  private async busy(volume: SessionVolume): Promise<boolean> {
    if (volume.inUse) return true
    const server = await this.options.server(volume.user, volume.server)
    return server !== undefined && busyStates.has(server.status.state)
  }

  /** The volume a launch of this server would start on; undefined for a new volume. */
  async find(user: string, server: string): Promise<SessionVolume | undefined> {
    return (await this.options.store.listForUser(user)).find((v) => v.user === user && v.server === server)
  }

  /**
   * The user's kept volumes of stopped servers of the project, newest stop first. One nobody has
   * seen stopped before gets its stop time now (idempotent: whoever notices first records it).
   */
  async listStopped(user: string, namespace: string, project: string): Promise<KeptVolume[]> {
    const volumes = (await this.options.store.listForUser(user)).filter(
      (v) => v.user === user && sameProject(v, namespace, project),
    )
    const kept: KeptVolume[] = []
    for (const volume of volumes) {
      if (await this.busy(volume)) continue
      let date = volume.stoppedAt
      if (!date) {
        date = this.now().toISOString()
        await this.options.store.setStoppedAt(volume, date)
      }
      kept.push({
        name: volume.server,
        branch: volume.branch,
        commit: volume.commitSha.slice(0, 7),
        date,
        pvs: true,
      })
    }
    return kept.sort((a, b) => Date.parse(b.date) - Date.parse(a.date))
  }

  /** Deletes the user's volume of that server: 404 when there is none, 409 while its server is busy. */
  async remove(user: string, server: string, namespace: string, project: string): Promise<void> {
    const volume = await this.find(user, server)
    if (!volume || !sameProject(volume, namespace, project)) {
      throw new ApiError(404, 'AUTOSAVE_NOT_FOUND', `You have no autosave or kept volume named ${server}.`)
    }
    if (await this.busy(volume)) {
      throw new ApiError(
        409,
        'SERVER_BUSY',
        `The server ${server} is running, starting or stopping on this volume: stop it first, then delete the volume.`,
      )
    }
    await this.options.store.delete(volume)
  }

  /**
   * One retention pass over every volume: records the stop time of volumes newly seen stopped,
   * clears it on volumes in use again, and deletes those stopped for longer than the retention.
   * Never the volume of a busy server. Safe to run in several places at once: each step is
   * idempotent, and a volume already deleted is no error.
   */
  async sweep(): Promise<SweepResult> {
    const now = this.now()
    const result: SweepResult = { deleted: [], marked: [], kept: 0 }
    for (const volume of await this.options.store.listAll()) {
      if (await this.busy(volume)) {
        if (volume.stoppedAt) await this.options.store.setStoppedAt(volume, null)
        result.kept++
        continue
      }
      if (!volume.stoppedAt) {
        await this.options.store.setStoppedAt(volume, now.toISOString())
        result.marked.push(volume.id)
        continue
      }
      const stopped = Date.parse(volume.stoppedAt)
      if (Number.isNaN(stopped) || now.getTime() - stopped < this.options.retentionMs) {
        result.kept++
        continue
      }
      await this.options.store.delete(volume)
      result.deleted.push(volume.id)
    }
    return result
  }
}
