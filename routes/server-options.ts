import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { ServerOptionsSchema } from '../schemas/server-options.js'

/** The configured server options, so a UI can build its launch form. */
const serverOptionsRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/server_options',
    {
      schema: {
        operationId: 'getServerOptions',
        summary: 'The options a launch accepts',
        tags: ['servers'],
        response: {
          200: { ...Type.Ref(ServerOptionsSchema), description: 'The server options, keyed by name.' },
        },
      },
    },
    async () => fastify.config.serverOptions,
  )
}

export default serverOptionsRoutes
