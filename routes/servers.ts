import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { couldBeServerName, matchesFilter, noSuchServer } from '../lib/servers/server-object.js'
import type { StopResult } from '../lib/servers/stopper.js'
import { authenticated, errors, userSecurity, withBody } from '../schemas/common.js'
import {
  DeleteQuerySchema,
  LaunchRequestSchema,
  ServerFilterSchema,
  ServerListSchema,
  ServerNameParams,
  ServerSchema,
} from '../schemas/servers.js'

const ServerRef = Type.Ref(ServerSchema)

/** Launch, list, inspect and stop the caller's notebook servers. */
const serversRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('onRequest', fastify.authenticate)

  fastify.post(
    '/servers',
    {
      schema: {
        operationId: 'launchServer',
        summary: 'Launch a notebook server for a project at a commit',
        description:
          'Checks the project, branch and commit in GitLab as the caller, picks the image built for the commit ' +
          '(or the default image), and asks JupyterHub to start the server. Identical concurrent launches give one server.',
        tags: ['servers'],
        security: userSecurity,
        body: LaunchRequestSchema,
        response: {
          200: { ...ServerRef, description: 'The server already existed.' },
          201: { ...ServerRef, description: 'The server was started and is up.' },
          202: { ...ServerRef, description: 'The server is starting.' },
          ...errors(
            ...authenticated,
            ...withBody,
            'INVALID_SERVER_OPTIONS',
            'GITLAB_TOKEN_MISSING',
            'GITLAB_TOKEN_REJECTED',
            'GITLAB_SCOPE_MISSING',
            'ACCESS_DENIED',
            'USER_NOT_FOUND',
            'PROJECT_NOT_FOUND',
            'BRANCH_NOT_FOUND',
            'COMMIT_NOT_FOUND',
            'IMAGE_NOT_FOUND',
            'SERVER_LIMIT_REACHED',
            'SERVER_BUSY',
            'TOO_MANY_SPAWNS',
          ),
        },
      },
    },
    async (request, reply) => {
      const user = request.user?.name as string
      let result: Awaited<ReturnType<typeof fastify.launcher.launch>>
      try {
        result = await fastify.launcher.launch(user, request.body)
      } catch (err) {
        fastify.metrics.countLaunchError(err)
        throw err
      }
      const { status, server } = result
      fastify.metrics.countLaunch(status === 201 ? 'created' : status === 202 ? 'accepted' : 'existing')
      // A server that started anew with an autosave in its options restores it as it clones.
      if (status !== 200 && server.annotations['renku.io/autosave']) fastify.metrics.countAutosave('restored')
      return reply.code(status).send(server)
    },
  )

  fastify.get(
    '/servers',
    {
      schema: {
        operationId: 'listServers',
        summary: "List the caller's servers",
        description: 'Each filter is optional and an exact match.',
        tags: ['servers'],
        security: userSecurity,
        querystring: ServerFilterSchema,
        response: {
          200: { ...Type.Ref(ServerListSchema), description: "The caller's servers, keyed by name." },
          ...errors(...authenticated, 'VALIDATION_ERROR'),
        },
      },
    },
    async (request) => {
      const servers = await fastify.serverDirectory.list(request.user?.name as string)
      const matching = [...servers.values()].filter((server) => matchesFilter(server, request.query))
      return { servers: Object.fromEntries(matching.map((server) => [server.name, server])) }
    },
  )

  fastify.get(
    '/servers/:server_name',
    {
      schema: {
        operationId: 'getServer',
        summary: 'One of the caller’s servers',
        tags: ['servers'],
        security: userSecurity,
        params: ServerNameParams,
        response: {
          200: { ...ServerRef, description: 'The server.' },
          ...errors(...authenticated, 'SERVER_NOT_FOUND'),
        },
      },
    },
    async (request) => {
      return fastify.serverDirectory.require(request.user?.name as string, request.params.server_name)
    },
  )

  fastify.delete(
    '/servers/:server_name',
    {
      schema: {
        operationId: 'stopServer',
        summary: 'Stop a server and remove it',
        description:
          'With `force=true`, a server the hub cannot stop has its pod deleted in Kubernetes (grace period 30 s).',
        tags: ['servers'],
        security: userSecurity,
        params: ServerNameParams,
        querystring: DeleteQuerySchema,
        response: {
          202: { type: 'null', description: 'The stop was accepted and is still under way.' },
          204: { type: 'null', description: 'The server was stopped and removed.' },
          // A body is not expected, but one that is sent is parsed (and must be JSON).
          ...errors(...authenticated, ...withBody, 'SERVER_NOT_FOUND', 'SERVER_BUSY'),
        },
      },
    },
    async (request, reply) => {
      const user = request.user?.name as string
      const name = request.params.server_name
      if (!couldBeServerName(name)) throw noSuchServer(name)
      let outcome: StopResult
      try {
        outcome = await fastify.stopper.stop(user, name, request.query.force === true, request.log)
      } catch (err) {
        fastify.metrics.countStopError(err)
        throw err
      }
      fastify.metrics.countStop(outcome)
      return reply.code(outcome === 'stopped' ? 204 : 202).send()
    },
  )
}

export default serversRoutes
