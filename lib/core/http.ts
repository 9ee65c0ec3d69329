import { Agent, type Dispatcher, errors } from 'undici'
import { type Upstream, UpstreamError } from './errors.js'
import { errorOutcome, statusOutcome, type UpstreamObserver, type UpstreamOutcome } from './metrics.js'

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The body parsed as JSON when the upstream said it is JSON, else undefined. */
  json: unknown
}

export interface RequestOptions {
  /**
   * What the call is, as a pattern without raw ids, names or tokens (e.g. `GET /users/{name}`):
   * the metrics' `operation` label.
   */
  operation: string
  headers?: Record<string, string>
  /** Sent as JSON. */
  body?: unknown
  query?: Record<string, string | number | boolean | undefined>
  /** Retry once on a 5xx answer or a failed connection. Defaults to true for GET, HEAD and DELETE. */
  retry?: boolean
  timeoutMs?: number
}

export interface HttpClientOptions {
  upstream: Upstream
  /** Absolute base URL; request paths are appended to it. */
  baseUrl: string
  timeoutMs?: number
  /** Told of each call (retry included) with its operation, outcome and duration. */
  observe?: UpstreamObserver
}

const retryDelayMs = 100
const idempotent = new Set(['GET', 'HEAD', 'DELETE'])

/** Keep-alive connections shared by every upstream client of the process. */
const sharedAgent = new Agent({ keepAliveTimeout: 10_000, connections: 128, pipelining: 1 })

function failureOf(err: unknown): 'timeout' | 'unavailable' | undefined {
  if (
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError ||
    (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError'))
  ) {
    return 'timeout'
  }
  if (err instanceof errors.UndiciError || (err instanceof Error && 'code' in err)) return 'unavailable'
  return undefined
}

/**
 * A small JSON-over-HTTP client for one upstream: keep-alive, a timeout per call,
 * one retry of idempotent calls, and failures turned into errors naming the upstream.
 */
export class HttpClient {
  readonly upstream: Upstream
  readonly baseUrl: string
  private readonly timeoutMs: number
  private readonly observe?: UpstreamObserver

  constructor(options: HttpClientOptions) {
    this.upstream = options.upstream
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.timeoutMs = options.timeoutMs ?? 10_000
    this.observe = options.observe
  }

  async request(method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    const started = performance.now()
    let outcome: UpstreamOutcome = 'bad_response'
    try {
      const response = await this.attempts(method, path, options)
      outcome = statusOutcome(response.status)
      return response
    } catch (err) {
      outcome = errorOutcome(err)
      throw err
    } finally {
      this.observe?.({
        upstream: this.upstream,
        operation: options.operation,
        outcome,
        seconds: (performance.now() - started) / 1000,
      })
    }
  }

  private async attempts(method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    const retry = options.retry ?? idempotent.has(method)
    try {
      const first = await this.once(method, path, options)
      if (!retry || first.status < 500) return first
    } catch (err) {
      // A refused or dropped connection (a kept-alive socket the upstream closed) is worth one
      // more try; a timeout is not, since it already took the whole time allowed.
      if (!retry || !(err instanceof UpstreamError) || err.failure !== 'unavailable') throw err
    }
    await new Promise((resolve) => setTimeout(resolve, retryDelayMs))
    return this.once(method, path, options)
  }

  private async once(method: string, path: string, options: RequestOptions): Promise<HttpResponse> {
    const url = new URL(this.baseUrl + path)
    for (const [key, val] of Object.entries(options.query ?? {})) {
      if (val !== undefined) url.searchParams.set(key, String(val))
    }
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers }
    let body: string | undefined
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(options.body)
    }
    const timeout = options.timeoutMs ?? this.timeoutMs
    let response: Dispatcher.ResponseData
    let text: string
    try {
      response = await sharedAgent.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: method as Dispatcher.HttpMethod,
        headers,
        body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: AbortSignal.timeout(timeout),
      })
      text = await response.body.text()
    } catch (err) {
      const failure = failureOf(err)
      if (!failure) throw err
      throw new UpstreamError(this.upstream, failure, `${method} ${url.pathname}: ${(err as Error).message}`)
    }
    const contentType = String(response.headers['content-type'] ?? '')
    let json: unknown
    if (text && contentType.includes('json')) {
      try {
        json = JSON.parse(text)
      } catch {
        throw new UpstreamError(this.upstream, 'bad_response', `${method} ${url.pathname}: invalid JSON`)
      }
    }
    return { status: response.statusCode, headers: response.headers, json }
  }

  /** An error for an answer the caller did not expect; the status and path go to the log only. */
  unexpected(method: string, path: string, response: HttpResponse): UpstreamError {
    const failure =
      response.status === 503 ? 'unavailable' : response.status === 504 ? 'timeout' : 'bad_response'
    return new UpstreamError(
      this.upstream,
      failure,
      `${method} ${path.split('?')[0]} answered ${response.status}`,
    )
  }
}
