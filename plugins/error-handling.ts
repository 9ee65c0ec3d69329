/**
 * Every error a client can meet, in the error body: the API's own errors as they are, Fastify's
 * validation and parser errors mapped to the API's codes, anything unexpected as INTERNAL_ERROR
 * without internal text (and logged in full).
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ApiError, type FieldErrors, UpstreamError } from '../lib/core/errors.js'
import { type ErrorCode, errorCodes } from '../schemas/error-codes.js'
import { pathOf, recordFailure } from './request-log.js'

const partOf = new Map<string, 'json' | 'query' | 'params'>([
  ['body', 'json'],
  ['querystring', 'query'],
  ['params', 'params'],
  ['headers', 'params'],
])

interface AjvIssue {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

/**
 * Field name to reasons. Field names come from the client (`{"constructor": 1}`), so they are
 * collected in a Map, never looked up on a plain object that has a prototype.
 */
function fieldErrors(issues: AjvIssue[]): FieldErrors {
  const fields = new Map<string, string[]>()
  for (const issue of issues) {
    let field = issue.instancePath.replace(/^\//, '').replaceAll('/', '.')
    let why = issue.message ?? 'is invalid'
    if (issue.keyword === 'required') {
      field = [field, String(issue.params.missingProperty)].filter(Boolean).join('.')
      why = 'is required'
    } else if (issue.keyword === 'additionalProperties') {
      field = [field, String(issue.params.additionalProperty)].filter(Boolean).join('.')
      why = 'is not a known field'
    }
    const key = field || '_schema'
    const reasons = fields.get(key) ?? []
    if (!reasons.includes(why)) reasons.push(why)
    fields.set(key, reasons)
  }
  // Object.fromEntries defines own properties, so even a field named `__proto__` stays data.
  return Object.fromEntries(fields)
}

const fastifyClientErrors = new Map<string, [ErrorCode, string]>([
  [
    'FST_ERR_CTP_INVALID_MEDIA_TYPE',
    ['UNSUPPORTED_MEDIA_TYPE', 'Request bodies must be JSON (Content-Type: application/json).'],
  ],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', ['EMPTY_BODY', 'The request says it has a JSON body but it is empty.']],
  [
    'FST_ERR_CTP_INVALID_CONTENT_LENGTH',
    ['BAD_REQUEST', 'The Content-Length header does not match the body.'],
  ],
  ['FST_ERR_CTP_BODY_TOO_LARGE', ['BODY_TOO_LARGE', 'The request body is too large.']],
])

function routeNotFound(request: FastifyRequest): ApiError {
  return new ApiError(404, 'ROUTE_NOT_FOUND', `There is no ${request.method} ${pathOf(request.url)}.`)
}

function internalError(): ApiError {
  return new ApiError(500, 'INTERNAL_ERROR', 'Something went wrong on our side; the error has been logged.')
}

function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err
  if (err.validation) {
    const part = partOf.get(err.validationContext ?? 'body') ?? 'json'
    const fields = fieldErrors(err.validation as AjvIssue[])
    const [field, reasons] = Object.entries(fields)[0] ?? ['_schema', ['is invalid']]
    const where = field === '_schema' ? `the ${part === 'json' ? 'body' : part}` : field
    return new ApiError(422, 'VALIDATION_ERROR', `The request is invalid: ${where} ${reasons[0]}.`, {
      fields: { part, errors: fields },
    })
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    const known = fastifyClientErrors.get(err.code)
    if (known) return new ApiError(errorCodes[known[0]].status, known[0], known[1])
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
      // The parser also refuses keys that would reach an object's prototype, and does not say which.
      return new ApiError(
        400,
        'INVALID_JSON',
        'The request body is not valid JSON (keys `__proto__` and `constructor.prototype` are not allowed).',
      )
    }
    // Another complaint about the request; Fastify's own wording is not shown.
    return new ApiError(400, 'BAD_REQUEST', 'The request is malformed.')
  }
  return internalError()
}

/** Sends the error body already serialized, so no response schema can fail on it. */
export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers(error.headers)
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(error.toBody()))
}

/** Malformed HTTP, refused by Node's parser before Fastify sees a request. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ApiError(408, 'REQUEST_TIMEOUT', 'The request did not arrive in time.')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new ApiError(431, 'HEADERS_TOO_LARGE', 'The request headers are too large.')
        : new ApiError(400, 'BAD_REQUEST', 'The request is not valid HTTP.')
  const body = JSON.stringify(error.toBody())
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode]}\r\nConnection: close\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

/** Errors the router raises before any route runs (bad percent-encoding). */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const error =
    err.code === 'FST_ERR_BAD_URL'
      ? new ApiError(400, 'BAD_URL', 'The URL is not validly percent-encoded.')
      : internalError()
  // Fastify does not report these to the log controller: their one line is written here.
  const line = { method: request.method, url: pathOf(request.url), status: error.statusCode }
  if (error.statusCode >= 500) request.log.error({ ...line, err }, 'request')
  else request.log.debug(line, 'request')
  sendError(reply, error)
}

export default fp(
  async (fastify) => {
    fastify.setErrorHandler((err: FastifyError, request, reply) => {
      let error: ApiError
      try {
        // A body sent to no route is refused as such, whatever is wrong with the body.
        error = request.is404 ? routeNotFound(request) : toApiError(err)
        // Told in the request's one log line (OneLinePerRequest); never sent to the client.
        if (error instanceof UpstreamError) {
          recordFailure(request, { upstream: error.upstream, failure: error.failure, detail: error.detail })
        } else if (error.statusCode >= 500) {
          recordFailure(request, { err })
        }
      } catch (failure) {
        // Whatever went wrong, the client still gets the error body, never Fastify's own.
        recordFailure(request, { err, errorHandlerFailure: failure })
        error = internalError()
      }
      return sendError(reply, error)
    })
    fastify.setNotFoundHandler((request, reply) => sendError(reply, routeNotFound(request)))
  },
  { name: 'error-handling' },
)
