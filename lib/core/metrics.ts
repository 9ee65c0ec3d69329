/**
 * The service's Prometheus metrics (the README's "Metrics"), one registry per app so that several
 * apps in one process (the tests) keep their own series, and the listener that serves them.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { ApiError, type Upstream, UpstreamError, type UpstreamFailure } from './errors.js'

/** How an upstream call ended: an answer's status class, or why there was no usable answer. */
export type UpstreamOutcome = 'ok' | '3xx' | '4xx' | '5xx' | 'unreachable' | 'timeout' | 'bad_response'

export interface UpstreamCall {
  upstream: Upstream
  /** A pattern such as `GET /users/{name}`: never a raw id, name or token (bounded label values). */
  operation: string
  outcome: UpstreamOutcome
  seconds: number
}

/** Told of every upstream call once it has ended (after its retry, if any). */
export type UpstreamObserver = (call: UpstreamCall) => void

export type LaunchOutcome = 'created' | 'accepted' | 'existing' | 'refused' | 'failed'
/** How a stop through the service ended, as counted. */
export type CountedStop = 'stopped' | 'accepted' | 'forced' | 'refused' | 'failed'
/** Where a read of a user's servers was answered from: the service's own copy, or a call to the hub. */
export type HubReadSource = 'state' | 'hub'
/** What the service sees of autosaves; pushes and failed saves happen at the hub or in the pod. */
export type AutosaveOutcome = 'restored' | 'deleted'

/** The label value of requests that matched no route, so unknown URLs add no series. */
export const UNMATCHED_ROUTE = 'unmatched'

const upstreamLabel: Record<Upstream, string> = {
  JupyterHub: 'jupyterhub',
  GitLab: 'gitlab',
  Kubernetes: 'kubernetes',
  'the image registry': 'registry',
  'the local log files': 'local_logs',
  'the local volumes': 'local_volumes',
}

const failureOutcome: Record<UpstreamFailure, UpstreamOutcome> = {
  unavailable: 'unreachable',
  timeout: 'timeout',
  bad_response: 'bad_response',
}

/** The outcome of an HTTP answer by its status class. */
export function statusOutcome(status: number): UpstreamOutcome {
  if (status < 300) return 'ok'
  if (status < 400) return '3xx'
  return status < 500 ? '4xx' : '5xx'
}

/** The outcome of a call that threw: an UpstreamError's failure, else a response the client could not use. */
export function errorOutcome(err: unknown): UpstreamOutcome {
  return err instanceof UpstreamError ? failureOutcome[err.failure] : 'bad_response'
}

/** Whether an error refused the request (the caller's 4xx) or failed it (5xx), and its error code. */
function errorVerdict(err: unknown): { refused: boolean; code: string } {
  if (err instanceof ApiError) return { refused: err.statusCode < 500, code: err.code }
  return { refused: false, code: 'INTERNAL_ERROR' }
}

// Seconds; launches and stops wait for the hub for up to ~40 s.
const requestBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** The metric objects of one app, in their own registry. */
export class ServiceMetrics {
  readonly registry = new Registry()

  /** Requests to the service, by method, route pattern and status; `_count` counts them. */
  readonly httpRequests = new Histogram({
    name: 'renku_notebooks_http_request_duration_seconds',
    help: 'Requests to the service by method, route pattern (not the raw URL) and status, with durations.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: requestBuckets,
    registers: [this.registry],
  })

  readonly upstreamRequests = new Histogram({
    name: 'renku_notebooks_upstream_request_duration_seconds',
    help: 'Calls to JupyterHub, GitLab, Kubernetes and image registries by upstream, operation pattern and outcome, with durations.',
    labelNames: ['upstream', 'operation', 'outcome'] as const,
    buckets: requestBuckets,
    registers: [this.registry],
  })

  readonly launches = new Counter({
    name: 'renku_notebooks_launches_total',
    help: 'Launch requests by outcome (created, accepted, existing, refused, failed) and error code.',
    labelNames: ['outcome', 'code'] as const,
    registers: [this.registry],
  })

  readonly stops = new Counter({
    name: 'renku_notebooks_stops_total',
    help: 'Stop requests by outcome (stopped, accepted, forced, refused, failed) and error code.',
    labelNames: ['outcome', 'code'] as const,
    registers: [this.registry],
  })

  readonly hubReads = new Counter({
    name: 'renku_notebooks_hub_reads_total',
    help: "Reads of a user's servers by source: the service's own state or a call to the hub.",
    labelNames: ['source'] as const,
    registers: [this.registry],
  })

  readonly progressStreams = new Gauge({
    name: 'renku_notebooks_progress_streams_open',
    help: 'Launch progress streams currently open.',
    registers: [this.registry],
  })

  readonly autosaves = new Counter({
    name: 'renku_notebooks_autosaves_total',
    help: 'Autosaves restored by a launch and deleted through the API (saves at stop time are counted where they run: the hub, the pod).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  constructor() {
    // Process and Node.js runtime metrics (CPU, memory, event loop lag, GC), unprefixed as usual.
    collectDefaultMetrics({ register: this.registry })
    // Series with known label values exist from the start, so rates and alerts see a zero, not a gap.
    for (const source of ['state', 'hub'] as const) this.hubReads.inc({ source }, 0)
    for (const outcome of ['restored', 'deleted'] as const) {
      this.autosaves.inc({ outcome }, 0)
    }
  }

  /** For `HttpClient` and the other upstream clients. */
  readonly observeUpstream: UpstreamObserver = (call) => {
    this.upstreamRequests.observe(
      { upstream: upstreamLabel[call.upstream], operation: call.operation, outcome: call.outcome },
      call.seconds,
    )
  }

  /** `route` is the matched route pattern (`request.routeOptions.url`), undefined when none matched. */
  observeRequest(method: string, route: string | undefined, status: number, seconds: number): void {
    this.httpRequests.observe({ method, route: route ?? UNMATCHED_ROUTE, status: String(status) }, seconds)
  }

  countLaunch(outcome: Exclude<LaunchOutcome, 'refused' | 'failed'>): void {
    this.launches.inc({ outcome, code: '' })
  }

  /** A launch that ended in an error: refused (4xx) or failed (5xx), by the error's code. */
  countLaunchError(err: unknown): void {
    const { refused, code } = errorVerdict(err)
    this.launches.inc({ outcome: refused ? 'refused' : 'failed', code })
  }

  countStop(outcome: Exclude<CountedStop, 'refused' | 'failed'>): void {
    this.stops.inc({ outcome, code: '' })
  }

  countStopError(err: unknown): void {
    const { refused, code } = errorVerdict(err)
    this.stops.inc({ outcome: refused ? 'refused' : 'failed', code })
  }

  /** One read of a user's servers, answered from the service's own state or by asking the hub. */
  countHubRead(source: HubReadSource): void {
    this.hubReads.inc({ source })
  }

  /** Counts a progress stream as open; call the returned function when it closes (extra calls do nothing). */
  openProgressStream(): () => void {
    this.progressStreams.inc()
    let open = true
    return () => {
      if (open) this.progressStreams.dec()
      open = false
    }
  }

  countAutosave(outcome: AutosaveOutcome): void {
    this.autosaves.inc({ outcome })
  }
}

export interface MetricsListener {
  /** e.g. `http://127.0.0.1:9090/metrics` */
  url: string
  close(): Promise<void>
}

/** Serves `GET /metrics` in the text exposition format on a port of its own; nothing else. */
export async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsListener> {
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0]
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' })
      response.end(path === '/metrics' ? 'Only GET.\n' : 'Only /metrics is served here.\n')
      return
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': registry.contentType })
        response.end(request.method === 'HEAD' ? undefined : text)
      },
      (err: unknown) => {
        response.writeHead(500, { 'content-type': 'text/plain' })
        response.end(`Metrics could not be collected: ${(err as Error).message}\n`)
      },
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        // A scraper keeps its connection alive; closing must not wait for it.
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
