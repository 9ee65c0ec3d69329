import type { ServerObject } from '../../schemas/servers.js'
import { UpstreamError } from '../core/errors.js'
import type { HubReflector, UserServers } from '../hub/state/reflector.js'
import type { PodInspector, PodView } from './pods.js'
import { couldBeServerName, noSuchServer, toServerObject } from './server-object.js'

export interface ServerDirectoryOptions {
  /** This replica's copy of the hub's server state. */
  state: Pick<HubReflector, 'read'>
  /** Pod details from Kubernetes, when configured. */
  pods: PodInspector | null
  origin: string
  baseUrl: string
  /** Told when pod details could not be read and the hub's data is shown alone. */
  onPodsUnavailable?: (err: UpstreamError) => void
}

interface ViewEntry {
  /** The pod copy's version the view was built from (0 without Kubernetes). */
  podVersion: number | undefined
  view: Promise<ReadonlyMap<string, ServerObject>>
}

/**
 * A user's servers as the service shows them: the hub's, from this replica's copy of its state
 * (no hub call), enriched with pod details (from the pod copy, when Kubernetes is configured).
 */
export class ServerDirectory {
  constructor(private readonly options: ServerDirectoryOptions) {}

  /**
   * Views built per state of a user: until it changes, reads share the server objects (and the
   * pod lookup) instead of each building their own. With Kubernetes, only while the pod copy is
   * unchanged and no pod is waiting (its events are read afresh).
   */
  private readonly views = new WeakMap<UserServers, ViewEntry>()

  /** All of the user's named servers, keyed by name. */
  list(user: string): Promise<ReadonlyMap<string, ServerObject>> {
    return this.listFollowing(user)
  }

  /**
   * The user's servers; `following` names one the caller asked for, which the copy of the hub's
   * state reads afresh (rate-limited) while it is starting or stopping.
   */
  private async listFollowing(user: string, following?: string): Promise<ReadonlyMap<string, ServerObject>> {
    const hubUser = await this.options.state.read(user, following)
    if (!hubUser) return new Map()
    const { pods } = this.options
    const podVersion = pods ? pods.version?.() : 0
    const shared = this.views.get(hubUser)
    if (shared && podVersion !== undefined && shared.podVersion === podVersion) return shared.view
    const entry: ViewEntry = {
      podVersion,
      view: this.build(user, hubUser).then(({ servers, settled }) => {
        if (!settled && this.views.get(hubUser) === entry) this.views.delete(hubUser)
        return servers
      }),
    }
    this.views.set(hubUser, entry)
    return entry.view
  }

  /** The server objects; `settled` is false when pod details may change without a pod changing. */
  private async build(
    user: string,
    hubUser: UserServers,
  ): Promise<{ servers: ReadonlyMap<string, ServerObject>; settled: boolean }> {
    const servers = Object.values(hubUser.servers).filter((server) => server.name !== '')
    let pods = new Map<string, PodView>()
    let settled = true
    if (this.options.pods && servers.length) {
      const refs = servers.map((server) => {
        const podName = server.state?.pod_name
        return { name: server.name, ...(typeof podName === 'string' && { podName }) }
      })
      try {
        pods = await this.options.pods.podsForUser(user, refs)
      } catch (err) {
        // Kubernetes down must not hide the servers: the hub's word is enough to list them.
        if (!(err instanceof UpstreamError)) throw err
        this.options.onPodsUnavailable?.(err)
        settled = false
      }
    }
    const hub = { origin: this.options.origin, baseUrl: this.options.baseUrl }
    // A waiting pod's step comes from its events, which are read afresh.
    if ([...pods.values()].some((pod) => !pod.ready && !pod.terminating)) settled = false
    return {
      servers: new Map(
        servers.map((server) => [server.name, toServerObject(hub, user, server, pods.get(server.name))]),
      ),
      settled,
    }
  }

  /** One of the user's servers, from the copy; undefined for a name no server can have (no read at all). */
  async get(user: string, name: string): Promise<ServerObject | undefined> {
    return couldBeServerName(name) ? (await this.list(user)).get(name) : undefined
  }

  /**
   * One of the user's servers as a client asking for it by name sees it: while the copy shows it
   * starting or stopping (or does not hold it), the hub is asked first, rate-limited.
   */
  async follow(user: string, name: string): Promise<ServerObject | undefined> {
    return couldBeServerName(name) ? (await this.listFollowing(user, name)).get(name) : undefined
  }

  /** One of the user's servers as a client asking for it sees it, or a 404 `SERVER_NOT_FOUND`. */
  async require(user: string, name: string): Promise<ServerObject> {
    const server = await this.follow(user, name)
    if (!server) throw noSuchServer(name)
    return server
  }
}
