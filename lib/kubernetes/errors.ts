/** Maps what `@kubernetes/client-node` throws to the service's UpstreamError. */
import { UpstreamError } from '../core/errors.js'
import { errorOutcome, statusOutcome, type UpstreamObserver, type UpstreamOutcome } from '../core/metrics.js'

/** The parts of a Kubernetes `Status` body the service reads. */
export interface KubernetesStatus {
  message?: string
  reason?: string
  code?: number
}

/** The HTTP status of an `ApiException` (client-node's error for a non-2xx answer), else undefined. */
export function httpStatus(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

/** The `Status` body of an `ApiException`, which client-node keeps as text. */
export function statusBody(error: unknown): KubernetesStatus | undefined {
  const body = (error as { body?: unknown } | null)?.body
  if (typeof body === 'object' && body !== null) return body as KubernetesStatus
  if (typeof body !== 'string' || body === '') return undefined
  try {
    const parsed: unknown = JSON.parse(body)
    return typeof parsed === 'object' && parsed !== null ? (parsed as KubernetesStatus) : undefined
  } catch {
    return undefined
  }
}

const unreachable = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ECONNABORTED',
])

function systemCode(error: unknown): string | undefined {
  // node-fetch's FetchError carries the socket error's code as `code` and `errno`.
  const e = error as { code?: unknown; errno?: unknown; cause?: { code?: unknown } } | null
  for (const value of [e?.code, e?.errno, e?.cause?.code]) if (typeof value === 'string') return value
  return undefined
}

/**
 * The UpstreamError for a failed call. `action` says what was attempted (e.g. `list pods`)
 * and goes, with the status, into the log-only detail; never a token or a body.
 */
export function toUpstreamError(error: unknown, action: string): UpstreamError {
  if (error instanceof UpstreamError) return error
  const status = httpStatus(error)
  if (status !== undefined) {
    const message = statusBody(error)?.message
    const detail = `${action}: HTTP ${status}${message ? ` (${message})` : ''}`
    if (status === 503) return new UpstreamError('Kubernetes', 'unavailable', detail)
    if (status === 504) return new UpstreamError('Kubernetes', 'timeout', detail)
    return new UpstreamError('Kubernetes', 'bad_response', detail)
  }
  const name = (error as { name?: unknown } | null)?.name
  const code = systemCode(error)
  if (name === 'AbortError' || name === 'TimeoutError' || code === 'ETIMEDOUT') {
    return new UpstreamError('Kubernetes', 'timeout', `${action}: no answer in time`)
  }
  if (code && unreachable.has(code))
    return new UpstreamError('Kubernetes', 'unavailable', `${action}: ${code}`)
  const text = error instanceof Error ? error.message : String(error)
  return new UpstreamError('Kubernetes', 'bad_response', `${action}: ${text.slice(0, 200)}`)
}

/**
 * Runs one API call and tells `observe` its operation (e.g. `GET /api/v1/namespaces/{namespace}/pods`),
 * outcome and duration.
 */
export async function observeCall<T>(
  observe: UpstreamObserver | undefined,
  operation: string,
  run: () => Promise<T>,
): Promise<T> {
  const started = performance.now()
  let outcome: UpstreamOutcome = 'ok'
  try {
    return await run()
  } catch (error) {
    const status = httpStatus(error)
    outcome = status === undefined ? errorOutcome(toUpstreamError(error, operation)) : statusOutcome(status)
    throw error
  } finally {
    observe?.({ upstream: 'Kubernetes', operation, outcome, seconds: (performance.now() - started) / 1000 })
  }
}
