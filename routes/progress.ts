import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import {
  eventId,
  parseEventId,
  progressEvent,
  resumeAfter,
  startKeyOf,
  stepIndex,
} from '../lib/progress/steps.js'
import { LaunchWatches, type SentEvent } from '../lib/servers/progress-watch.js'
import { authenticated, errors, userSecurity } from '../schemas/common.js'
import { ProgressEventSchema, ProgressHeadersSchema } from '../schemas/progress.js'
import { ServerNameParams } from '../schemas/servers.js'

export interface ProgressOptions {
  /** Interval of the keep-alive comment; default 15 000 ms. */
  keepAliveMs?: number
  /** How often a followed start looks at the pod copy (Kubernetes); default 1000 ms. */
  podPollMs?: number
}

const LAST_STEP = stepIndex('failed')

function frame(sent: SentEvent): string {
  return `id: ${sent.id}\nevent: progress\ndata: ${JSON.stringify(sent.event)}\n\n`
}

/** `GET servers/{name}/progress`: the launch's progress as Server-Sent Events (the README's "Following a start"). */
const progressRoutes: FastifyPluginAsyncTypebox<ProgressOptions> = async (fastify, options) => {
  const keepAliveMs = options.keepAliveMs ?? 15_000
  const watches = new LaunchWatches({
    hub: fastify.jupyterhub,
    servers: fastify.serverDirectory,
    pods: fastify.kubernetes,
    podPollMs: options.podPollMs,
    log: fastify.log,
  })
  const open = new Set<ServerResponse>()
  // Open streams would hold the server's close forever.
  fastify.addHook('preClose', async () => {
    for (const raw of open) raw.end()
  })

  fastify.get(
    '/servers/:server_name/progress',
    {
      onRequest: fastify.authenticate,
      // A HEAD would open a stream with no body to send.
      exposeHeadRoute: false,
      schema: {
        operationId: 'watchServerProgress',
        summary: "Follow a server's start as Server-Sent Events",
        description:
          'Events `id: <id>`, `event: progress`, `data: <ProgressEvent>`: the steps `requested`, `scheduled`, ' +
          '`pulling`, `cloning`, `starting` in this order (a step may be skipped, none is sent twice), then ' +
          '`ready` (with the `url`) or `failed` (with the cause); the stream ends after it. A running server ' +
          "gives one `ready` event, a failed one one `failed` event. With `Last-Event-ID` (as a browser's " +
          'EventSource sends on reconnecting) the stream resumes after that event, on any replica; 204 when ' +
          'that was the last event. A comment line keeps the connection alive every 15 s. Authenticated by ' +
          'the token header or the login cookie (EventSource sends no headers).',
        tags: ['servers'],
        security: userSecurity,
        params: ServerNameParams,
        headers: ProgressHeadersSchema,
        response: {
          200: {
            description: "The stream; each event's `data` is a ProgressEvent.",
            content: { 'text/event-stream': { schema: Type.Ref(ProgressEventSchema) } },
          },
          204: { type: 'null', description: '`Last-Event-ID` was already the last event: nothing follows.' },
          ...errors(...authenticated, 'SERVER_NOT_FOUND', 'VALIDATION_ERROR'),
        },
      },
    },
    async (request, reply) => {
      const user = request.user?.name as string
      const name = request.params.server_name
      const server = await fastify.serverDirectory.require(user, name)
      const startKey = startKeyOf(server.started)
      const lastEventId = request.headers['last-event-id']
      const after = resumeAfter(lastEventId, startKey) ?? -1
      // A browser's EventSource reconnects after every end, but not after a 204. The hub
      // forgets a failed start's time when it stops it, so its `failed` id is recognised by step.
      const seenFailure = parseEventId(lastEventId)?.index === LAST_STEP && server.status.state === 'failed'
      if (after >= stepIndex('ready') || seenFailure) return reply.code(204).send()

      reply.hijack()
      const raw = reply.raw
      raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
      })
      if (server.status.state === 'running') {
        const ready = progressEvent('ready', {
          message: 'Your server is ready.',
          ready: true,
          url: server.url,
        })
        raw.end(frame({ id: eventId(startKey, 'ready'), index: stepIndex('ready'), event: ready }))
        return
      }
      open.add(raw)
      const closeGauge = fastify.metrics.openProgressStream()
      let unsubscribe = () => {}
      const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), keepAliveMs)
      const finish = () => {
        clearInterval(keepAlive)
        open.delete(raw)
        closeGauge()
        unsubscribe()
        if (!raw.writableEnded) raw.end()
      }
      raw.on('close', finish)
      raw.write(': progress of the start\n\n')
      unsubscribe = watches.watch(user, server).subscribe(after, (sent) => {
        raw.write(frame(sent))
        if (sent.index >= stepIndex('ready')) finish()
      })
      if (raw.writableEnded) finish()
    },
  )
}

export default progressRoutes
