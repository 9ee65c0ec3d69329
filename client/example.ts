/**
 * A small program using the service through its generated types and `openapi-fetch`: launch a
 * notebook server for a project at a commit, follow its start on the progress stream until it
 * is ready, list the servers, read its logs, stop it, and list the work of stopped servers
 * saved for the project.
 *
 *   NOTEBOOKS_URL=https://hub.example.com/services/notebooks JUPYTERHUB_TOKEN=… \
 *     npx tsx client/example.ts <namespace> <project> <commit_sha>
 */
import { pathToFileURL } from 'node:url'
import createClient from 'openapi-fetch'
import type { components, paths } from './generated/openapi.js'

type Server = components['schemas']['Server']
type ApiError = components['schemas']['Error']
type ProgressEvent = components['schemas']['ProgressEvent']
type Client = ReturnType<typeof createClient<paths>>

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
  /** Names of the caller's autosave branches of the project, newest first. */
  autosaves: string[]
}

function failure(what: string, status: number, error: ApiError | undefined): Error {
  return new Error(`${what}: ${status} ${error?.code ?? ''} ${error?.messages.error ?? ''}`.trim())
}

/**
 * Reads `GET servers/{name}/progress` (Server-Sent Events) until its last event. A browser would
 * use `new EventSource(url, { withCredentials: true })` with the login cookie instead.
 */
export async function followProgress(
  client: Client,
  name: string,
  timeoutMs: number,
  onEvent: (event: ProgressEvent) => void,
): Promise<ProgressEvent[]> {
  const { data, error, response } = await client.GET('/servers/{server_name}/progress', {
    params: { path: { server_name: name } },
    parseAs: 'stream',
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (!data) throw failure('progress', response.status, error)
  const events: ProgressEvent[] = []
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of data as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    // Events end with a blank line; `data:` holds the JSON, lines starting with `:` keep the stream alive.
    let end = buffered.indexOf('\n\n')
    while (end >= 0) {
      const data = buffered
        .slice(0, end)
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n')
      buffered = buffered.slice(end + 2)
      end = buffered.indexOf('\n\n')
      if (!data) continue
      const event = JSON.parse(data) as ProgressEvent
      events.push(event)
      onEvent(event)
    }
  }
  return events
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

  // Follow the start as it happens: the progress stream's events until `ready` or `failed`.
  const events = await followProgress(client, name, options.timeoutMs ?? 120_000, (event) =>
    log(`progress: ${event.step} (${event.progress}%) ${event.message}`),
  )
  const last = events.at(-1)
  if (last?.step !== 'ready') throw new Error(`${name} failed: ${last?.message ?? 'the stream ended early'}`)
  const got = await client.GET('/servers/{server_name}', { params: { path: { server_name: name } } })
  if (!got.data) throw failure('get', got.response.status, got.error)
  const server: Server = got.data
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

  // The namespace may hold slashes: the client sends them percent-encoded, which the service accepts.
  const saved = await client.GET('/{namespace}/{project}/autosave', {
    params: { path: { namespace: options.namespace, project: options.project } },
  })
  if (!saved.data) throw failure('autosaves', saved.response.status, saved.error)
  const autosaves = saved.data.autosaves.map((autosave) => autosave.name)
  log(`autosaves of ${options.project}: ${autosaves.length}`)

  return {
    server,
    launchStatus: launched.response.status,
    listed,
    logs: logs.data,
    stopStatus: stopped.response.status,
    autosaves,
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
