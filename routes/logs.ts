import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ApiError } from '../lib/core/errors.js'
import { authenticated, errors, userSecurity } from '../schemas/common.js'
import { LogLinesSchema, LogsQuerySchema, ServerNameParams } from '../schemas/servers.js'

/** The notebook container's log of one of the caller's servers. */
const logsRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/logs/:server_name',
    {
      onRequest: fastify.authenticate,
      schema: {
        operationId: 'getServerLogs',
        summary: "A server's log lines",
        description:
          'The last `max_lines` lines (0: all), oldest first. A server whose container has not started yet ' +
          'gives an empty list or one line explaining why.',
        tags: ['servers'],
        security: userSecurity,
        params: ServerNameParams,
        querystring: LogsQuerySchema,
        response: {
          200: { ...LogLinesSchema, description: 'Log lines, oldest first.' },
          ...errors(...authenticated, 'VALIDATION_ERROR', 'SERVER_NOT_FOUND', 'LOGS_UNAVAILABLE'),
        },
      },
    },
    async (request) => {
      const username = request.user?.name as string
      const serverName = request.params.server_name
      const server = await fastify.serverDirectory.require(username, serverName)
      if (!fastify.logSource) {
        throw new ApiError(
          503,
          'LOGS_UNAVAILABLE',
          'No log source is configured (neither Kubernetes nor local log files).',
        )
      }
      const podName = server.state.pod_name
      return fastify.logSource.readLogs({
        username,
        serverName,
        maxLines: request.query.max_lines,
        ...(typeof podName === 'string' && { podName }),
      })
    },
  )
}

export default logsRoutes
