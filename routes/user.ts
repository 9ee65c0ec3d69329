import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { authenticated, errors, userSecurity } from '../schemas/common.js'
import { ServerSchema } from '../schemas/servers.js'

const UserSchema = Type.Object(
  {
    name: Type.String(),
    admin: Type.Boolean(),
    servers: Type.Record(Type.String(), Type.Ref(ServerSchema)),
  },
  { description: "The caller's JupyterHub identity and servers (never tokens)." },
)

const userRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/user',
    {
      onRequest: fastify.authenticate,
      schema: {
        operationId: 'getUser',
        summary: 'Who the caller is',
        tags: ['user'],
        security: userSecurity,
        response: { 200: { ...UserSchema, description: 'The caller.' }, ...errors(...authenticated) },
      },
    },
    async (request) => {
      const user = request.user as NonNullable<typeof request.user>
      const servers = await fastify.serverDirectory.list(user.name)
      return { name: user.name, admin: user.admin, servers: Object.fromEntries(servers) }
    },
  )
}

export default userRoutes
