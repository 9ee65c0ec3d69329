/** Errors the service answers with, in the body of the README's "Errors". */
import type { ErrorCode } from '../../schemas/error-codes.js'

export type { ErrorCode } from '../../schemas/error-codes.js'

export type FieldErrors = Record<string, string[]>

export interface ErrorBody {
  messages: { error: string; json?: FieldErrors; query?: FieldErrors; params?: FieldErrors }
  code: ErrorCode
}

/** An error with an HTTP status and a stable machine code, safe to show to the client. */
export class ApiError extends Error {
  readonly statusCode: number
  readonly code: ErrorCode
  readonly headers: Record<string, string>
  readonly fields?: { part: 'json' | 'query' | 'params'; errors: FieldErrors }

  constructor(
    statusCode: number,
    code: ErrorCode,
    message: string,
    options: { headers?: Record<string, string>; fields?: ApiError['fields']; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause })
    this.name = 'ApiError'
    this.statusCode = statusCode
    this.code = code
    this.headers = options.headers ?? {}
    this.fields = options.fields
  }

  toBody(): ErrorBody {
    const messages: ErrorBody['messages'] = { error: this.message }
    if (this.fields) messages[this.fields.part] = this.fields.errors
    return { messages, code: this.code }
  }
}

export type Upstream =
  | 'JupyterHub'
  | 'GitLab'
  | 'Kubernetes'
  | 'the image registry'
  | 'the local log files'
  | 'the local volumes'
export type UpstreamFailure = 'bad_response' | 'unavailable' | 'timeout'

const failureStatus: Record<UpstreamFailure, number> = { bad_response: 502, unavailable: 503, timeout: 504 }
const failureCode: Record<UpstreamFailure, ErrorCode> = {
  bad_response: 'UPSTREAM_BAD_RESPONSE',
  unavailable: 'UPSTREAM_UNAVAILABLE',
  timeout: 'UPSTREAM_TIMEOUT',
}
const failureSentence: Record<UpstreamFailure, string> = {
  bad_response: 'gave an unexpected answer',
  unavailable: 'cannot be reached',
  timeout: 'did not answer in time',
}

/**
 * An upstream that failed: 502, 503 or 504 naming it. `detail` goes to the log only,
 * never to the client, since it may hold an upstream's body.
 */
export class UpstreamError extends ApiError {
  readonly upstream: Upstream
  readonly failure: UpstreamFailure
  readonly detail?: string

  constructor(upstream: Upstream, failure: UpstreamFailure, detail?: string, message?: string) {
    const name = upstream.charAt(0).toUpperCase() + upstream.slice(1)
    super(failureStatus[failure], failureCode[failure], message ?? `${name} ${failureSentence[failure]}.`)
    this.name = 'UpstreamError'
    this.upstream = upstream
    this.failure = failure
    this.detail = detail
  }
}
