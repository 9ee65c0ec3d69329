import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { authenticated, errors, userSecurity } from '../schemas/common.js'
import { ServerOptionsSchema } from '../schemas/server-options.js'

/** The configured server options, so a UI can build its launch form. */
const serverOptionsRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/server_options',
    {
      onRequest: fastify.authenticate,
      schema: {
        operationId: 'getServerOptions',
        summary: 'The options a launch accepts',
        tags: ['servers'],
        security: userSecurity,
        response: {
          200: { ...Type.Ref(ServerOptionsSchema), description: 'The server options, keyed by name.' },
          ...errors(...authenticated),
        },
      },
    },
    async () => fastify.config.serverOptions,
  )
}

export default serverOptionsRoutes
