/**
 * The request log: one line per request, instead of Fastify's two, with what went wrong when
 * something did; the error handler records upstream failures and bugs here for that line.
 */
import { type FastifyReply, type FastifyRequest, type FastifyServerOptions, LogController } from 'fastify'

/** Requests slower than this are logged at `info`. */
const SLOW_REQUEST_MS = 1000

export function pathOf(url: string): string {
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
export class OneLinePerRequest extends LogController {
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

/** Notes why a request failed, for its one log line; never sent to the client. */
export function recordFailure(request: FastifyRequest, detail: Record<string, unknown>): void {
  failures.set(request, detail)
}

/** The logger options: the level, and headers that carry secrets hidden. */
export function loggerOptions(
  level: string,
  stream?: { write(line: string): void },
): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
      censor: '[hidden]',
    },
    ...(stream && { stream }),
  }
}
