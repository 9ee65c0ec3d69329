import type { ServerObject } from '../schemas/servers.js'
import { UpstreamError } from './errors.js'
import type { HubState, UserServers } from './hub-state.js'
import type { PodInspector, PodView } from './pods.js'
import { toServerObject } from './servers.js'

export interface ServerDirectoryOptions {
  /** This replica's copy of the hub's server state. */
  state: Pick<HubState, 'read'>
  /** Pod details from Kubernetes, when configured. */
  pods: PodInspector | null
  origin: string
  baseUrl: string
  /** Told when pod details could not be read and the hub's data is shown alone. */
  onPodsUnavailable?: (err: UpstreamError) => void
}

/**
 * A user's servers as the service shows them: the hub's, from this replica's copy of its state
 * (no hub call), enriched with pod details (from the pod copy, when Kubernetes is configured).
 */
export class ServerDirectory {
  constructor(private readonly options: ServerDirectoryOptions) {}

  /**
   * Views built per state of a user: until it changes, reads share the server objects instead
   * of each building their own. Only without Kubernetes, whose pods change on their own.
   */
  private readonly views = new WeakMap<UserServers, Promise<ReadonlyMap<string, ServerObject>>>()

  /** All of the user's named servers, keyed by name. */
  async list(user: string): Promise<ReadonlyMap<string, ServerObject>> {
    const hubUser = await this.options.state.read(user)
    if (!hubUser) return new Map()
    if (this.options.pods) return this.build(user, hubUser)
    let view = this.views.get(hubUser)
    if (!view) {
      view = this.build(user, hubUser)
      this.views.set(hubUser, view)
    }
    return view
  }

  private async build(user: string, hubUser: UserServers): Promise<ReadonlyMap<string, ServerObject>> {
    const servers = Object.values(hubUser.servers).filter((server) => server.name !== '')
    let pods = new Map<string, PodView>()
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
      }
    }
    const hub = { origin: this.options.origin, baseUrl: this.options.baseUrl }
    return new Map(
      servers.map((server) => [server.name, toServerObject(hub, user, server, pods.get(server.name))]),
    )
  }

  async get(user: string, name: string): Promise<ServerObject | undefined> {
    return (await this.list(user)).get(name)
  }
}
