/**
 * The hub's own progress stream of a server (`GET /users/{user}/servers/{name}/progress`):
 * Server-Sent Events with `data:` lines only, blank lines as keep-alives (JupyterHub 3.0,
 * apihandlers/users.py `SpawnProgressAPIHandler`).
 */
import { Agent, type Dispatcher, request } from 'undici'
import { UpstreamError } from '../core/errors.js'
import type { HubProgressEvent } from '../progress/steps.js'

/** The hub answered that the server is neither starting nor failed (400), or does not exist (404). */
export class HubNotStarting extends Error {
  constructor(readonly status: number) {
    super(`the hub has no start of this server to report (${status})`)
    this.name = 'HubNotStarting'
  }
}

export interface HubStreamOptions {
  apiUrl: string
  token: string
  user: string
  server: string
  signal: AbortSignal
  /** Time for the answer's headers. */
  timeoutMs: number
}

// Its own pool: long-lived streams must not hold the connections of ordinary calls.
const streams = new Agent({ keepAliveTimeout: 1_000, pipelining: 1 })

/** The data of each event as it comes, until the hub ends the stream or `signal` aborts. */
export async function* hubProgressEvents(options: HubStreamOptions): AsyncGenerator<HubProgressEvent> {
  const seg = encodeURIComponent
  const path = `/users/${seg(options.user)}/servers/${seg(options.server)}/progress`
  const url = new URL(options.apiUrl.replace(/\/+$/, '') + path)
  let response: Dispatcher.ResponseData
  try {
    response = await request(url, {
      dispatcher: streams,
      headers: { authorization: `token ${options.token}`, accept: 'text/event-stream' },
      signal: options.signal,
      headersTimeout: options.timeoutMs,
      // The hub writes a keep-alive every 8 s: a minute of silence is a dead connection.
      bodyTimeout: 60_000,
    })
  } catch (err) {
    if (options.signal.aborted) return
    throw new UpstreamError('JupyterHub', 'unavailable', `GET ${path}: ${(err as Error).message}`)
  }
  if (response.statusCode === 400 || response.statusCode === 404) {
    await response.body.dump()
    throw new HubNotStarting(response.statusCode)
  }
  if (response.statusCode !== 200) {
    await response.body.dump()
    throw new UpstreamError('JupyterHub', 'bad_response', `GET ${path} answered ${response.statusCode}`)
  }
  let buffered = ''
  let data: string[] = []
  try {
    for await (const chunk of response.body) {
      buffered += chunk.toString('utf8')
      let newline = buffered.indexOf('\n')
      while (newline >= 0) {
        const line = buffered.slice(0, newline).replace(/\r$/, '')
        buffered = buffered.slice(newline + 1)
        newline = buffered.indexOf('\n')
        if (line === '') {
          if (data.length) {
            const event = parse(data.join('\n'))
            data = []
            if (event) yield event
          }
        } else if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''))
        }
      }
    }
  } catch (err) {
    if (options.signal.aborted) return
    throw new UpstreamError('JupyterHub', 'unavailable', `GET ${path}: ${(err as Error).message}`)
  } finally {
    // Ends the hub's stream when the consumer stops early.
    if (!response.body.destroyed) response.body.destroy()
  }
}

function parse(text: string): HubProgressEvent | undefined {
  try {
    const value = JSON.parse(text) as unknown
    return value && typeof value === 'object' ? (value as HubProgressEvent) : undefined
  } catch {
    return undefined
  }
}
