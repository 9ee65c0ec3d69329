/**
 * One retention sweep of the session volumes, then exit (README "Session volumes"). The chart's
 * CronJob runs it from the service's image (`node dist/sweep-volumes.js`), with the service's
 * configuration, so that volumes past their retention go even while no replica is up.
 */
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './lib/core/config.js'

let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`renku-notebooks sweep cannot start: ${err.message}\n`)
  process.exit(1)
}

const app = await buildApp(config)
let failed = false
try {
  await app.ready()
  if (!app.sessionVolumes) {
    app.log.info('session volumes are off (NOTEBOOKS_SESSION_VOLUMES): nothing to sweep')
  } else {
    const result = await app.sessionVolumes.sweep()
    app.log.info(
      { deleted: result.deleted, marked: result.marked, kept: result.kept },
      'swept the session volumes',
    )
  }
} catch (err) {
  failed = true
  app.log.error({ err }, 'the session volume sweep failed')
} finally {
  await app.close()
}
process.exit(failed ? 1 : 0)
