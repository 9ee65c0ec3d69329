import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Ajv } from 'ajv'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyServerOptions,
} from 'fastify'
import type { Config } from './lib/config.js'
import { ApiError, type FieldErrors, UpstreamError } from './lib/errors.js'
import configPlugin from './plugins/config.js'
import gitlabPlugin from './plugins/gitlab.js'
import hubAuthPlugin, { type HubAuthOptions } from './plugins/hub-auth.js'
import jupyterhubPlugin from './plugins/jupyterhub.js'
import kubernetesPlugin from './plugins/kubernetes.js'
import oauthPlugin from './plugins/oauth.js'
import serversPlugin from './plugins/servers.js'
import swaggerPlugin from './plugins/swagger.js'
import authRoutes from './routes/auth.js'
import autosaveRoutes from './routes/autosave.js'
import healthRoutes from './routes/health.js'
import logsRoutes from './routes/logs.js'
import serverOptionsRoutes from './routes/server-options.js'
import serversRoutes from './routes/servers.js'
import userRoutes from './routes/user.js'
import { AutosaveListSchema, AutosaveSchema } from './schemas/autosave.js'
import { ErrorSchema } from './schemas/common.js'
import { ServerOptionSchema, ServerOptionsSchema } from './schemas/server-options.js'
import { ServerListSchema, ServerSchema } from './schemas/servers.js'

export interface AppOptions {
  hubAuth?: HubAuthOptions
  /** Extra Fastify options, e.g. a logger for tests. */
  fastify?: FastifyServerOptions
}

type ValidationContext = 'body' | 'querystring' | 'params' | 'headers'
const partOf: Record<ValidationContext, 'json' | 'query' | 'params'> = {
  body: 'json',
  querystring: 'query',
  params: 'params',
  headers: 'params',
}

interface AjvIssue {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

function fieldErrors(issues: AjvIssue[]): FieldErrors {
  const fields: FieldErrors = {}
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
    const reasons = fields[key] ?? []
    if (!reasons.includes(why)) reasons.push(why)
    fields[key] = reasons
  }
  return fields
}

const friendlyFastifyErrors: Record<string, [string, string]> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [
    'UNSUPPORTED_MEDIA_TYPE',
    'Request bodies must be JSON (Content-Type: application/json).',
  ],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['EMPTY_BODY', 'The request says it has a JSON body but it is empty.'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['BAD_REQUEST', 'The Content-Length header does not match the body.'],
  FST_ERR_CTP_BODY_TOO_LARGE: ['BODY_TOO_LARGE', 'The request body is too large.'],
}

function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err
  if (err.validation) {
    const part = partOf[(err.validationContext ?? 'body') as ValidationContext] ?? 'json'
    const fields = fieldErrors(err.validation as AjvIssue[])
    const [field, reasons] = Object.entries(fields)[0] ?? ['_schema', ['is invalid']]
    const where = field === '_schema' ? `the ${part === 'json' ? 'body' : part}` : field
    return new ApiError(422, 'VALIDATION_ERROR', `The request is invalid: ${where} ${reasons[0]}.`, {
      fields: { part, errors: fields },
    })
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    const [code, message] = friendlyFastifyErrors[err.code] ?? [
      err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError
        ? 'INVALID_JSON'
        : 'BAD_REQUEST',
      err instanceof SyntaxError ? 'The request body is not valid JSON.' : err.message,
    ]
    return new ApiError(status, code, message)
  }
  return new ApiError(500, 'INTERNAL_ERROR', 'Something went wrong on our side; the error has been logged.')
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
    },
    connectionTimeout: 60_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 72_000,
    // The hub and an ingress sit in front of the service.
    trustProxy: true,
    // Errors the router raises before any route runs (bad percent-encoding, an overlong path part).
    frameworkErrors: (err, _request, reply) => {
      const [code, message] =
        err.code === 'FST_ERR_BAD_URL'
          ? ['BAD_URL', 'The URL is not validly percent-encoded.']
          : ['URI_TOO_LONG', 'A part of the URL is too long.']
      const status = err.statusCode ?? 400
      ;(reply as FastifyReply).code(status).send(new ApiError(status, code, message).toBody())
    },
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
    const error = toApiError(err)
    if (error instanceof UpstreamError) {
      request.log.warn(
        { upstream: error.upstream, failure: error.failure, detail: error.detail },
        'upstream failure',
      )
    } else if (error.statusCode >= 500) {
      request.log.error({ err }, 'unexpected error')
    }
    return reply.code(error.statusCode).headers(error.headers).send(error.toBody())
  })
  app.setNotFoundHandler((request, reply) => {
    const error = new ApiError(
      404,
      'ROUTE_NOT_FOUND',
      `There is no ${request.method} ${request.url.split('?')[0]}.`,
    )
    return reply.code(404).send(error.toBody())
  })

  await app.register(configPlugin, { config })
  await app.register(swaggerPlugin)
  await app.register(jupyterhubPlugin)
  await app.register(gitlabPlugin)
  await app.register(kubernetesPlugin)
  await app.register(oauthPlugin)
  await app.register(hubAuthPlugin, options.hubAuth ?? {})
  await app.register(serversPlugin)

  const prefix = config.servicePrefix.replace(/\/$/, '')
  await app.register(healthRoutes, { prefix })
  await app.register(serversRoutes, { prefix })
  await app.register(logsRoutes, { prefix })
  await app.register(serverOptionsRoutes, { prefix })
  await app.register(userRoutes, { prefix })
  await app.register(authRoutes, { prefix })
  // Last: its catch-all route for namespaces with raw slashes yields to every other route.
  await app.register(autosaveRoutes, { prefix })
  return app
}
