/** Stopping a server: the peer of launching. */
import type { FastifyBaseLogger } from 'fastify'
import type { JupyterHubClient } from '../hub/client.js'
import type { ServerDirectory } from './directory.js'
import type { PodInspector } from './pods.js'
import { noSuchServer } from './server-object.js'

export type StopResult = 'stopped' | 'accepted' | 'forced'

export interface StopperOptions {
  hub: JupyterHubClient
  directory: ServerDirectory
  /** Deletes pods for a forced stop; null without Kubernetes. */
  pods: Pick<PodInspector, 'deletePod'> | null
}

export class Stopper {
  constructor(private readonly options: StopperOptions) {}

  /** Stops through the hub; with `force`, a server the hub cannot stop has its pod deleted. */
  async stop(user: string, name: string, force: boolean, log: FastifyBaseLogger): Promise<StopResult> {
    const { hub, directory, pods } = this.options
    let outcome: Awaited<ReturnType<JupyterHubClient['stopServer']>>
    try {
      // The hub answers 404 for a server the caller does not have: no need to look it up first.
      outcome = await hub.stopServer(user, name)
    } catch (err) {
      if (!force || !pods) throw err
      const podName = (await directory.get(user, name))?.state.pod_name
      if (typeof podName !== 'string') throw err
      log.warn({ user, server: name }, 'the hub could not stop the server; deleting its pod')
      await pods.deletePod(podName)
      return 'forced'
    }
    if (outcome === 'missing') throw noSuchServer(name)
    return outcome
  }
}
