import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Ajv } from 'ajv'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify'
import type { Config } from './lib/core/config.js'
import { ApiError, type FieldErrors, UpstreamError } from './lib/core/errors.js'
import configPlugin from './plugins/config.js'
import gitlabPlugin from './plugins/gitlab.js'
import hubAuthPlugin, { type HubAuthOptions } from './plugins/hub-auth.js'
import hubLoginPlugin from './plugins/hub-login.js'
import jupyterhubPlugin from './plugins/jupyterhub.js'
import kubernetesPlugin from './plugins/kubernetes.js'
import metricsPlugin from './plugins/metrics.js'
import serversPlugin from './plugins/servers.js'
import swaggerPlugin from './plugins/swagger.js'
import authRoutes from './routes/auth.js'
import autosaveRoutes from './routes/autosave.js'
import healthRoutes from './routes/health.js'
import logsRoutes from './routes/logs.js'
import progressRoutes, { type ProgressOptions } from './routes/progress.js'
import serverOptionsRoutes from './routes/server-options.js'
import serversRoutes from './routes/servers.js'
import userRoutes from './routes/user.js'
import { AutosaveListSchema, AutosaveSchema } from './schemas/autosave.js'
import { ErrorSchema } from './schemas/common.js'
import { type ErrorCode, errorCodes } from './schemas/error-codes.js'
import { ProgressEventSchema } from './schemas/progress.js'
import { ServerOptionSchema, ServerOptionsSchema } from './schemas/server-options.js'
import { ServerListSchema, ServerSchema } from './schemas/servers.js'

export interface AppOptions {
  hubAuth?: HubAuthOptions
  /** The progress stream's keep-alive and pod polling intervals (tests shorten them). */
  progress?: ProgressOptions
  /** Where the log goes instead of stdout, e.g. to read it in a test. */
  logStream?: { write(line: string): void }
  /** Extra Fastify options, e.g. a logger for tests. */
  fastify?: FastifyServerOptions
}

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
function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers(error.headers)
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(error.toBody()))
}

/** Malformed HTTP, refused by Node's parser before Fastify sees a request. */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
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

/** Requests slower than this are logged at `info`. */
const SLOW_REQUEST_MS = 1000

function pathOf(url: string): string {
  return url.split('?')[0] ?? url
}

/** Why a request failed on the service's or an upstream's side, for its log line. */
const failures = new WeakMap<FastifyRequest, Record<string, unknown>>()

/**
 * One log line per request, when it is answered, instead of Fastify's two: at `error` for an
 * unexpected error, `warn` for another 5xx (with the upstream's failure), `info` for a slow
 * request, else `debug` (operators turn it up when they need it). The path only, no query (it
 * may hold a one-time login code) and no headers (tokens, cookies).
 */
class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const status = reply.statusCode
    const ms = Math.round(reply.elapsedTime)
    const failure = failures.get(request) ?? (error ? { err: error } : undefined)
    const level =
      failure?.err !== undefined ? 'error' : status >= 500 ? 'warn' : ms > SLOW_REQUEST_MS ? 'info' : 'debug'
    reply.log[level](
      {
        method: request.method,
        url: pathOf(request.url),
        route: request.routeOptions.url,
        status,
        ms,
        ...failure,
      },
      'request',
    )
  }
}

/**
 * The service: Fastify with its plugins and routes, under the service prefix.
 * `server.ts` listens; tests build it with their own configuration.
 */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
        censor: '[hidden]',
      },
      ...(options.logStream && { stream: options.logStream }),
    },
    logController: new OneLinePerRequest(),
    connectionTimeout: 60_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 72_000,
    // The hub and an ingress sit in front of the service.
    trustProxy: true,
    // No path part is too long to route: Node's header limit (16 KiB) already bounds a URL, and a
    // server name longer than any server's is a 404 of the route, not a 414.
    routerOptions: { maxParamLength: Number.MAX_SAFE_INTEGER },
    // Errors the router raises before any route runs (bad percent-encoding).
    frameworkErrors: (err, request, reply) => {
      const error =
        err.code === 'FST_ERR_BAD_URL'
          ? new ApiError(400, 'BAD_URL', 'The URL is not validly percent-encoded.')
          : internalError()
      // Fastify does not report these to the log controller: their one line is written here.
      const line = { method: request.method, url: pathOf(request.url), status: error.statusCode }
      if (error.statusCode >= 500) request.log.error({ ...line, err }, 'request')
      else request.log.debug(line, 'request')
      sendError(reply as FastifyReply, error)
    },
    clientErrorHandler,
    ...options.fastify,
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Bodies are checked without coercion (the string "1.0" is not a number); query
  // strings and path parameters are text on the wire, so they are coerced.
  const bodyAjv = new Ajv({ coerceTypes: false, useDefaults: true, allErrors: true, strict: false })
  const textAjv = new Ajv({ coerceTypes: 'array', useDefaults: true, allErrors: true, strict: false })
  for (const schema of [
    ErrorSchema,
    ServerOptionSchema,
    ServerOptionsSchema,
    ServerSchema,
    ServerListSchema,
    AutosaveSchema,
    AutosaveListSchema,
    ProgressEventSchema,
  ]) {
    bodyAjv.addSchema(schema)
    textAjv.addSchema(schema)
    app.addSchema(schema)
  }
  app.setValidatorCompiler(
    ({ schema, httpPart }) =>
      (httpPart === 'body' ? bodyAjv : textAjv).compile(schema as object) as ReturnType<Ajv['compile']>,
  )
  // JSON bodies only, so a cross-site form cannot act with a user's cookie.
  app.removeContentTypeParser(['text/plain'])

  app.setErrorHandler((err: FastifyError, request, reply) => {
    let error: ApiError
    try {
      // A body sent to no route is refused as such, whatever is wrong with the body.
      error = request.is404 ? routeNotFound(request) : toApiError(err)
      // Told in the request's one log line (OneLinePerRequest); never sent to the client.
      if (error instanceof UpstreamError) {
        failures.set(request, { upstream: error.upstream, failure: error.failure, detail: error.detail })
      } else if (error.statusCode >= 500) {
        failures.set(request, { err })
      }
    } catch (failure) {
      // Whatever went wrong, the client still gets the error body, never Fastify's own.
      failures.set(request, { err, errorHandlerFailure: failure })
      error = internalError()
    }
    return sendError(reply, error)
  })
  app.setNotFoundHandler((request, reply) => sendError(reply, routeNotFound(request)))

  await app.register(configPlugin, { config })
  // First, so that its hook times every request and the upstream clients can report to it.
  await app.register(metricsPlugin)
  await app.register(swaggerPlugin)
  await app.register(jupyterhubPlugin)
  await app.register(gitlabPlugin)
  await app.register(kubernetesPlugin)
  await app.register(hubLoginPlugin)
  await app.register(hubAuthPlugin, options.hubAuth ?? {})
  await app.register(serversPlugin)

  const prefix = config.servicePrefix.replace(/\/$/, '')
  await app.register(healthRoutes, { prefix })
  await app.register(serversRoutes, { prefix })
  await app.register(logsRoutes, { prefix })
  await app.register(progressRoutes, { prefix, ...options.progress })
  await app.register(serverOptionsRoutes, { prefix })
  await app.register(userRoutes, { prefix })
  await app.register(authRoutes, { prefix })
  // Last: its catch-all route for namespaces with raw slashes yields to every other route.
  await app.register(autosaveRoutes, { prefix })
  return app
}
