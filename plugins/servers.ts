import fp from 'fastify-plugin'
import { HubReflector } from '../lib/hub/state/reflector.js'
import { ServerDirectory } from '../lib/servers/directory.js'
import { Launcher } from '../lib/servers/launcher.js'
import { LocalLogSource } from '../lib/servers/local-logs.js'
import type { LogSource } from '../lib/servers/pods.js'
import { Stopper } from '../lib/servers/stopper.js'

declare module 'fastify' {
  interface FastifyInstance {
    serverDirectory: ServerDirectory
    /** This replica's copy of the hub's server state (counters in `stats`). */
    hubReflector: HubReflector
    launcher: Launcher
    stopper: Stopper
    /** Where server logs come from; null when neither local log files nor Kubernetes are configured. */
    logSource: LogSource | null
  }
}

/** The users' servers: listing, launching, stopping and logs, composed from the upstream plugins. */
export default fp(
  async (fastify) => {
    const { config, jupyterhub, gitlab, kubernetes } = fastify
    const hubReflector = new HubReflector({
      hub: jupyterhub,
      podChanges: kubernetes?.changes,
      log: fastify.log,
      onRead: (source) => fastify.metrics.countHubRead(source),
    })
    fastify.decorate('hubReflector', hubReflector)
    fastify.addHook('onClose', () => hubReflector.stop())
    const directory = new ServerDirectory({
      state: hubReflector,
      pods: kubernetes,
      origin: config.hubOrigin,
      baseUrl: config.hubBaseUrl,
      onPodsUnavailable: (err) =>
        fastify.log.warn(
          { failure: err.failure, detail: err.detail },
          'pod details unavailable; showing the hub data alone',
        ),
    })
    fastify.decorate('serverDirectory', directory)
    fastify.decorate(
      'launcher',
      new Launcher({
        hub: jupyterhub,
        gitlab,
        directory,
        config,
        observeUpstream: fastify.metrics.observeUpstream,
      }),
    )
    fastify.decorate('stopper', new Stopper({ hub: jupyterhub, directory, pods: kubernetes }))
    const logSource: LogSource | null = config.logsDir ? new LocalLogSource(config.logsDir) : kubernetes
    fastify.decorate('logSource', logSource)
  },
  { name: 'servers', dependencies: ['config', 'metrics', 'jupyterhub', 'gitlab', 'kubernetes'] },
)
