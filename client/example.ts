/**
 * A small program using the service through its generated types and `openapi-fetch`: launch a
 * notebook server for a project at a commit, wait until it is ready, list the servers, read
 * its logs, stop it.
 *
 *   NOTEBOOKS_URL=https://hub.example.com/services/notebooks JUPYTERHUB_TOKEN=… \
 *     npx tsx client/example.ts <namespace> <project> <commit_sha>
 */
import { pathToFileURL } from 'node:url'
import createClient from 'openapi-fetch'
import type { components, paths } from './generated/openapi.js'

type Server = components['schemas']['Server']
type ApiError = components['schemas']['Error']

export interface ExampleOptions {
  /** The service, e.g. `https://hub.example.com/services/notebooks` (its prefix, no trailing slash needed). */
  baseUrl: string
  /** A JupyterHub token of the user. */
  token: string
  namespace: string
  project: string
  commitSha: string
  /** How long to wait for the server to be ready. */
  timeoutMs?: number
  log?: (line: string) => void
}

export interface ExampleResult {
  server: Server
  launchStatus: number
  listed: string[]
  logs: string[]
  stopStatus: number
}

function failure(what: string, status: number, error: ApiError | undefined): Error {
  return new Error(`${what}: ${status} ${error?.code ?? ''} ${error?.messages.error ?? ''}`.trim())
}

export async function runExample(options: ExampleOptions): Promise<ExampleResult> {
  const log = options.log ?? console.log
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/$/, ''),
    headers: { authorization: `token ${options.token}` },
  })

  const launch = () =>
    client.POST('/servers', {
      body: { namespace: options.namespace, project: options.project, commit_sha: options.commitSha },
    })
  let launched = await launch()
  // Error codes are typed per answer: the hub's spawn limit is worth waiting for.
  for (let tries = 1; launched.error?.code === 'TOO_MANY_SPAWNS' && tries < 3; tries++) {
    const seconds = Number(launched.response.headers.get('retry-after') ?? 10)
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    launched = await launch()
  }
  if (!launched.data) throw failure('launch', launched.response.status, launched.error)
  const name = launched.data.name
  log(`launch: ${launched.response.status} ${name} (${launched.data.status.state})`)

  let server: Server = launched.data
  const deadline = Date.now() + (options.timeoutMs ?? 120_000)
  while (!server.status.ready) {
    if (server.status.state === 'failed') throw new Error(`${name} failed: ${server.status.message ?? ''}`)
    if (Date.now() > deadline) throw new Error(`${name} was not ready in time`)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const polled = await client.GET('/servers/{server_name}', { params: { path: { server_name: name } } })
    if (!polled.data) throw failure('poll', polled.response.status, polled.error)
    server = polled.data
  }
  log(`ready: ${server.url}`)

  const list = await client.GET('/servers', { params: { query: { project: options.project } } })
  if (!list.data) throw failure('list', list.response.status, list.error)
  const listed = Object.keys(list.data.servers)
  log(`servers of ${options.project}: ${listed.join(', ')}`)

  const logs = await client.GET('/logs/{server_name}', {
    params: { path: { server_name: name }, query: { max_lines: 20 } },
  })
  if (!logs.data) throw failure('logs', logs.response.status, logs.error)
  log(`last ${logs.data.length} log lines:\n  ${logs.data.join('\n  ')}`)

  const stopped = await client.DELETE('/servers/{server_name}', { params: { path: { server_name: name } } })
  if (stopped.error) throw failure('stop', stopped.response.status, stopped.error)
  log(`stop: ${stopped.response.status}`)

  return {
    server,
    launchStatus: launched.response.status,
    listed,
    logs: logs.data,
    stopStatus: stopped.response.status,
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [namespace, project, commitSha] = process.argv.slice(2)
  const baseUrl = process.env.NOTEBOOKS_URL
  const token = process.env.JUPYTERHUB_TOKEN
  if (!namespace || !project || !commitSha || !baseUrl || !token) {
    console.error(
      'usage: NOTEBOOKS_URL=… JUPYTERHUB_TOKEN=… tsx client/example.ts <namespace> <project> <commit_sha>',
    )
    process.exit(2)
  }
  try {
    await runExample({ baseUrl, token, namespace, project, commitSha })
  } catch (err) {
    console.error((err as Error).message)
    process.exit(1)
  }
}
