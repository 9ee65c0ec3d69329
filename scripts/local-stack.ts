/**
 * The local stack: a real JupyterHub with the local spawner, the GitLab stand-in with a
 * demo project, and the service behind the hub's proxy. Prints the one curl that launches
 * a notebook, and where to open it. Stops everything on Ctrl-C.
 */
import { startStack } from '../test/support/stack.js'

const stack = await startStack({ serviceEnv: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' } })
const { hub, users, world } = stack
const service = `${hub.publicUrl}/services/notebooks/`
const body = JSON.stringify({
  namespace: 'demo-group',
  project: 'demo-project',
  commit_sha: world.commits.demo.masterFirst,
})

process.stdout.write(`
The local stack is running (Ctrl-C stops it).

  JupyterHub       ${hub.publicUrl}/hub/   (log in as "developer", password "password")
  the service      ${service}             (Swagger UI: ${service}docs)
  GitLab stand-in  ${stack.gitlab.url}   (demo project: demo-group/demo-project)
  metrics          ${stack.metricsUrl}   (Prometheus text format)

Launch a notebook server for demo-group/demo-project at commit ${world.commits.demo.masterFirst.slice(0, 7)}:

  curl -sS -X POST '${service}servers' \\
    -H 'Authorization: token ${users.developer.token}' \\
    -H 'Content-Type: application/json' \\
    -d '${body}'

Then open the "url" it answers with (log in as developer), or list your servers:

  curl -sS '${service}servers' -H 'Authorization: token ${users.developer.token}'

`)

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  process.stdout.write('\nStopping the local stack…\n')
  await stack.stop()
  process.exit(0)
}
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
