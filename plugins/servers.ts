import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { ConfigError } from '../lib/core/config.js'
import { HubReflector } from '../lib/hub/state/reflector.js'
import { ServerDirectory } from '../lib/servers/directory.js'
import { Launcher } from '../lib/servers/launcher.js'
import { LocalLogSource } from '../lib/servers/local-logs.js'
import { LocalVolumeStore } from '../lib/servers/local-volumes.js'
import type { LogSource } from '../lib/servers/pods.js'
import { Stopper } from '../lib/servers/stopper.js'
import { SessionVolumes } from '../lib/servers/volumes.js'

declare module 'fastify' {
  interface FastifyInstance {
    serverDirectory: ServerDirectory
    /** This replica's copy of the hub's server state (counters in `stats`). */
    hubReflector: HubReflector
    launcher: Launcher
    stopper: Stopper
    /** Where server logs come from; null when neither local log files nor Kubernetes are configured. */
    logSource: LogSource | null
    /** Kept working directories of servers (`NOTEBOOKS_SESSION_VOLUMES`); null when off. */
    sessionVolumes: SessionVolumes | null
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
    const sessionVolumes = createSessionVolumes(fastify, directory)
    fastify.decorate('sessionVolumes', sessionVolumes)
    fastify.decorate(
      'launcher',
      new Launcher({
        hub: jupyterhub,
        gitlab,
        directory,
        config,
        sessionVolumes,
        log: fastify.log,
        observeUpstream: fastify.metrics.observeUpstream,
      }),
    )
    fastify.decorate('stopper', new Stopper({ hub: jupyterhub, directory, pods: kubernetes }))
    const logSource: LogSource | null = config.logsDir ? new LocalLogSource(config.logsDir) : kubernetes
    fastify.decorate('logSource', logSource)
  },
  { name: 'servers', dependencies: ['config', 'metrics', 'jupyterhub', 'gitlab', 'kubernetes'] },
)

/** The longest pause between two retention sweeps of a replica. */
const MAX_SWEEP_INTERVAL_MS = 5 * 60_000

function createSessionVolumes(fastify: FastifyInstance, directory: ServerDirectory): SessionVolumes | null {
  const { config } = fastify
  if (!config.sessionVolumes) return null
  const store = config.volumesDir ? new LocalVolumeStore(config.volumesDir) : fastify.kubernetesVolumes
  if (!store) {
    throw new ConfigError(
      'NOTEBOOKS_SESSION_VOLUMES',
      'is true, but the volumes have nowhere to live: configure Kubernetes (in a cluster or KUBECONFIG).',
    )
  }
  const volumes = new SessionVolumes({
    store,
    server: (user, name) => directory.get(user, name),
    retentionMs: config.sessionVolumeRetentionMs,
  })
  // Every replica sweeps (each step is idempotent), so retention holds while any one is up.
  const interval = Math.max(1000, Math.min(MAX_SWEEP_INTERVAL_MS, config.sessionVolumeRetentionMs / 4))
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    volumes
      .sweep()
      .then((result) => {
        if (result.deleted.length > 0)
          fastify.log.info({ deleted: result.deleted }, 'deleted session volumes past their retention')
      })
      .catch((err: unknown) =>
        fastify.log.warn(
          { err, upstream: store.upstream },
          'the session volume sweep failed; retrying later',
        ),
      )
      .finally(() => {
        running = false
      })
  }, interval)
  timer.unref()
  fastify.addHook('onClose', () => clearInterval(timer))
  fastify.log.info(
    { store: store.upstream, retentionHours: config.sessionVolumeRetentionMs / 3_600_000 },
    'session volumes are on',
  )
  return volumes
}
