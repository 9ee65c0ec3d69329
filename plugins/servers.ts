import fp from 'fastify-plugin'
import { Launcher } from '../lib/launcher.js'
import { LocalLogSource } from '../lib/local-logs.js'
import type { LogSource } from '../lib/pods.js'
import { ServerDirectory } from '../lib/server-directory.js'

declare module 'fastify' {
  interface FastifyInstance {
    servers: ServerDirectory
    launcher: Launcher
    /** Where server logs come from; null when neither local log files nor Kubernetes are configured. */
    logSource: LogSource | null
  }
}

/** The users' servers: listing, launching and logs, composed from the upstream plugins. */
export default fp(
  async (fastify) => {
    const { config, jupyterhub, gitlab, kubernetes } = fastify
    const directory = new ServerDirectory({
      hub: jupyterhub,
      pods: kubernetes,
      origin: config.hubOrigin,
      baseUrl: config.hubBaseUrl,
      countRead: (source) => fastify.metrics.countHubRead(source),
      onPodsUnavailable: (err) =>
        fastify.log.warn(
          { failure: err.failure, detail: err.detail },
          'pod details unavailable; showing the hub data alone',
        ),
    })
    fastify.decorate('servers', directory)
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
    const logSource: LogSource | null = config.logsDir ? new LocalLogSource(config.logsDir) : kubernetes
    fastify.decorate('logSource', logSource)
  },
  { name: 'servers', dependencies: ['config', 'metrics', 'jupyterhub', 'gitlab', 'kubernetes'] },
)
