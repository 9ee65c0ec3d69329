/**
 * The local stack: a real JupyterHub with the local spawner, the GitLab stand-in with a
 * demo project, and the service behind the hub's proxy. Prints the one curl that launches
 * a notebook, and where to open it. Stops everything on Ctrl-C.
 */
import { serverName } from '../lib/servers/server-object.js'
import { startStack } from './stack.js'

const passedOn = ['NOTEBOOKS_SESSION_VOLUMES', 'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS'] as const
// Under the machine's name: git-lfs in a notebook then reaches it through the server's git proxy.
const stack = await startStack({
  gitlabByHostName: true,
  serviceEnv: {
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    ...Object.fromEntries(passedOn.flatMap((name) => (process.env[name] ? [[name, process.env[name]]] : []))),
  },
})
const { hub, users, world } = stack
const service = `${hub.publicUrl}/services/notebooks/`
const sha = world.commits.demo.masterFirst
const body = JSON.stringify({ namespace: 'demo-group', project: 'demo-project', commit_sha: sha })
const name = serverName('demo-group', 'demo-project', 'master', sha)
const auth = `-H 'Authorization: token ${users.developer.token}'`

process.stdout.write(`
The local stack is running (Ctrl-C, or SIGTERM to this process, stops it).

  JupyterHub       ${hub.publicUrl}/hub/   (log in as "developer", password "password")
  API docs         ${service}docs   (the service is under ${service})
  GitLab stand-in  ${stack.gitlab.url}   (demo project: demo-group/demo-project)
  metrics          ${stack.metricsUrl}   (Prometheus text format)

Launch a notebook server for demo-group/demo-project at commit ${sha.slice(0, 7)}:

  curl -sS -X POST '${service}servers' ${auth} \\
    -H 'Content-Type: application/json' -d '${body}'

It answers 202 while the server starts (201 if it was up at once). Ask again until "ready" is true:

  curl -sS '${service}servers/${name}' ${auth}

or follow its start, step by step, until "ready":

  curl -sSN '${service}servers/${name}/progress' ${auth}

Its log shows the checkout ("clone-repo: checked out master at ${sha}"):

  curl -sS '${service}logs/${name}' ${auth}

Then open the "url" it answers with (log in as developer), or list your servers:

  curl -sS '${service}servers' ${auth}

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
