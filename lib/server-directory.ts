import type { ServerObject } from '../schemas/servers.js'
import { UpstreamError } from './errors.js'
import type { HubUser, JupyterHubClient } from './jupyterhub.js'
import type { HubReadSource } from './metrics.js'
import type { PodInspector, PodView } from './pods.js'
import { toServerObject } from './servers.js'

export interface ServerDirectoryOptions {
  hub: JupyterHubClient
  /** Pod details from Kubernetes, when configured. */
  pods: PodInspector | null
  origin: string
  baseUrl: string
  /** Told of each read of a user's servers and where it was answered from (the metrics). */
  countRead?: (source: HubReadSource) => void
  /** Told when pod details could not be read and the hub's data is shown alone. */
  onPodsUnavailable?: (err: UpstreamError) => void
}

/** A user's servers as the service shows them: the hub's list, enriched with pod details. */
export class ServerDirectory {
  constructor(private readonly options: ServerDirectoryOptions) {}

  /**
   * Views built per hub answer: callers that shared one hub read (see JupyterHubClient.getUser)
   * share the pod lookup and the server objects too, instead of each building their own.
   */
  private readonly views = new WeakMap<HubUser, Promise<ReadonlyMap<string, ServerObject>>>()

  /** All of the user's servers, keyed by name; one hub call and at most one pod list. */
  async list(user: string): Promise<ReadonlyMap<string, ServerObject>> {
    this.options.countRead?.('hub')
    const hubUser = await this.options.hub.getUser(user)
    if (!hubUser) return new Map()
    let view = this.views.get(hubUser)
    if (!view) {
      view = this.build(user, hubUser)
      this.views.set(hubUser, view)
    }
    return view
  }

  private async build(user: string, hubUser: HubUser): Promise<ReadonlyMap<string, ServerObject>> {
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
