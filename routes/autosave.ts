import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ApiError } from '../lib/core/errors.js'
import { autosavesOf, parseAutosaveName, userAutosavePrefix } from '../lib/gitlab/autosaves.js'
import { gitlabTokenOf, requireChangeAccess } from '../lib/servers/project-access.js'
import { couldBeServerName } from '../lib/servers/server-object.js'
import {
  type AutosaveList,
  AutosaveListSchema,
  AutosaveParams,
  AutosaveProjectParams,
} from '../schemas/autosave.js'
import { authenticated, errors, userSecurity } from '../schemas/common.js'
import type { ErrorCode } from '../schemas/error-codes.js'

interface ProjectRef {
  namespace: string
  project: string
}

/** What an autosave path asks for, once the namespace's slashes are told from the rest. */
type AutosavePath = ({ kind: 'list' } & ProjectRef) | ({ kind: 'delete'; name: string } & ProjectRef)

const pathPart = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/

/** Whether this can be a GitLab project path at all; anything else is not asked of GitLab. */
function isProjectPath({ namespace, project }: ProjectRef): boolean {
  return pathPart.test(project) && namespace.split('/').every((part) => pathPart.test(part))
}

function decodeParts(path: string): string[] | null {
  try {
    return path.split('/').map((part) => decodeURIComponent(part))
  } catch {
    return null
  }
}

/**
 * Reads `<namespace>/<project>/autosave` (GET) or `<namespace>/<project>/autosave/<name>`
 * (DELETE) from the path after the service prefix, raw slashes anywhere in the namespace and
 * the name. Null for any other path.
 */
export function parseAutosavePath(method: string, path: string): AutosavePath | null {
  const parts = decodeParts(path)
  if (!parts) return null
  if (method === 'GET' || method === 'HEAD') {
    if (parts.length < 3 || parts.at(-1) !== 'autosave') return null
    const namespaceParts = parts.slice(0, -2)
    const project = parts.at(-2) as string
    if (project === '' || namespaceParts.includes('')) return null
    return { kind: 'list', namespace: namespaceParts.join('/'), project }
  }
  if (method !== 'DELETE') return null
  // `autosave` may also be a group's name or part of the branch name: prefer the split that
  // leaves an autosave branch name after it.
  const splits: number[] = []
  for (let i = 2; i < parts.length - 1; i++) if (parts[i] === 'autosave') splits.push(i)
  const split =
    splits.find((i) =>
      parts
        .slice(i + 1)
        .join('/')
        .startsWith('renku/autosave/'),
    ) ?? splits[0]
  if (split === undefined) return null
  const namespaceParts = parts.slice(0, split - 1)
  const project = parts[split - 1] as string
  if (project === '' || namespaceParts.includes('')) return null
  return {
    kind: 'delete',
    namespace: namespaceParts.join('/'),
    project,
    name: parts.slice(split + 1).join('/'),
  }
}

/** What reading a project in GitLab as the caller may answer. */
const projectErrors: ErrorCode[] = [
  ...authenticated,
  'GITLAB_TOKEN_MISSING',
  'GITLAB_TOKEN_REJECTED',
  'GITLAB_SCOPE_MISSING',
  'ACCESS_DENIED',
  'PROJECT_NOT_FOUND',
]

function noSuchAutosave(name: string): ApiError {
  return new ApiError(404, 'AUTOSAVE_NOT_FOUND', `You have no autosave named ${name}.`)
}

/** The caller's autosaves of a project (the README's "Autosave"): list them, delete one. */
const autosaveRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { gitlab, jupyterhub, config, sessionVolumes } = fastify

  async function project(user: string, ref: ProjectRef) {
    const fullPath = `${ref.namespace}/${ref.project}`
    if (!isProjectPath(ref)) {
      throw new ApiError(
        404,
        'PROJECT_NOT_FOUND',
        `The project ${fullPath} does not exist or you cannot see it.`,
      )
    }
    const token = await gitlabTokenOf(jupyterhub, user)
    return { token, project: await gitlab.getProject(token, fullPath) }
  }

  async function list(user: string, ref: ProjectRef): Promise<AutosaveList> {
    const { token, project: found } = await project(user, ref)
    // Only the caller's own: others' autosaves are never listed, even to a maintainer.
    const [branches, kept] = await Promise.all([
      gitlab.listBranches(token, found, userAutosavePrefix(user)),
      sessionVolumes ? sessionVolumes.listStopped(user, ref.namespace, ref.project) : [],
    ])
    const autosaves = [...kept, ...autosavesOf(branches, user)].sort(
      (a, b) => Date.parse(b.date) - Date.parse(a.date),
    )
    return { pvsSupport: sessionVolumes !== null, autosaves }
  }

  async function remove(user: string, ref: ProjectRef, name: string): Promise<void> {
    // A server's name (never an autosave branch's, which holds slashes): its kept volume. The
    // volume is the caller's own storage, so deleting it asks GitLab nothing.
    if (sessionVolumes && !name.includes('/') && couldBeServerName(name)) {
      await sessionVolumes.remove(user, name, ref.namespace, ref.project)
      fastify.metrics.countAutosave('deleted')
      return
    }
    // Another user's branch is "not found" before GitLab is asked anything.
    if (!parseAutosaveName(name, user)) throw noSuchAutosave(name)
    const { token, project: found } = await project(user, ref)
    requireChangeAccess(found, config.minAccessLevel, 'Deleting autosaves of')
    if (!(await gitlab.deleteBranch(token, found, name))) throw noSuchAutosave(name)
    fastify.metrics.countAutosave('deleted')
  }

  const callerName = (request: FastifyRequest) => request.user?.name as string

  fastify.get(
    '/:namespace/:project/autosave',
    {
      onRequest: fastify.authenticate,
      schema: {
        operationId: 'listAutosaves',
        summary: "The caller's autosaves and kept volumes of a project",
        description:
          'Work a stopped server had not committed and pushed, saved to GitLab as the branch ' +
          '`renku/autosave/<user>/<branch>/<commit_sha[:7]>/<head[:7]>`; the next launch of that branch and ' +
          'commit restores the newest. With session volumes (`pvsSupport: true`), also the kept volume of each ' +
          'of the caller’s stopped servers of the project (`pvs: true`, named by the server), which the next ' +
          'launch of that server resumes as it was left. Only the caller’s own, newest first. `namespace` may ' +
          'contain `/` (raw or as `%2F`).',
        tags: ['autosave'],
        security: userSecurity,
        params: AutosaveProjectParams,
        response: {
          200: {
            ...Type.Ref(AutosaveListSchema),
            description: "The caller's autosaves and kept volumes, newest first.",
          },
          ...errors(...projectErrors),
        },
      },
    },
    async (request) => list(callerName(request), request.params),
  )

  fastify.delete(
    '/:namespace/:project/autosave/:name',
    {
      onRequest: fastify.authenticate,
      schema: {
        operationId: 'deleteAutosave',
        summary: 'Delete one of the caller’s autosaves or kept volumes',
        description:
          'Deletes the autosave branch in GitLab, so the next launch starts from the commit. `namespace` may ' +
          'contain `/`, and `name` does: raw or as `%2F`. With session volumes, a server name deletes that ' +
          'server’s kept volume (`409 SERVER_BUSY` while the server is running, starting or stopping), so its ' +
          'next launch starts from a fresh clone.',
        tags: ['autosave'],
        security: userSecurity,
        params: AutosaveParams,
        response: {
          204: { type: 'null', description: 'The autosave or the volume was deleted.' },
          ...errors(...projectErrors, 'AUTOSAVE_NOT_FOUND', 'SERVER_BUSY'),
        },
      },
    },
    async (request, reply) => {
      const { name, ...ref } = request.params
      await remove(callerName(request), ref, name)
      return reply.code(204).send()
    },
  )

  // Raw slashes in the namespace or the name, which no `:param` matches (nor one longer than the
  // router's limit): read from the path. Every route the service has is more specific and wins;
  // any other path stays a 404, without asking for credentials first.
  const rest = (request: FastifyRequest) => {
    const path = request.url.split('?')[0] as string
    return path.startsWith(`${fastify.prefix}/`) ? path.slice(fastify.prefix.length + 1) : ''
  }
  fastify.route({
    method: ['GET', 'DELETE'],
    url: '/*',
    schema: { hide: true },
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
      if (parseAutosavePath(request.method, rest(request))) return fastify.authenticate(request, reply)
      // Answered before any body is read: an unknown path is a 404 whatever it was sent.
      reply.callNotFound()
      return reply
    },
    handler: async (request, reply) => {
      // onRequest has answered every other path.
      const target = parseAutosavePath(request.method, rest(request)) as AutosavePath
      if (target.kind === 'list') return list(callerName(request), target)
      await remove(callerName(request), target, target.name)
      return reply.code(204).send()
    },
  })
}

export default autosaveRoutes
