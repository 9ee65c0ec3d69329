import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './lib/core/config.js'

let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  // One line naming the variable; never its value, which may be a secret.
  process.stderr.write(`renku-notebooks cannot start: ${err.message}\n`)
  process.exit(1)
}

const app = await buildApp(config)

// On SIGTERM (a rolling update) stop accepting connections and let in-flight requests finish.
closeWithGrace({ delay: 25_000 }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing')
  await app.close()
})

await app.listen({ host: config.host, port: config.port })
// Its own port, never the service's: Prometheus scrapes it inside the cluster, the hub's proxy does not route it.
try {
  await app.listenForMetrics()
} catch (err) {
  process.stderr.write(
    `renku-notebooks cannot start: METRICS_PORT ${config.metricsPort} cannot be listened on: ${(err as Error).message}\n`,
  )
  await app.close()
  process.exit(1)
}
