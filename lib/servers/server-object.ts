import { createHash } from 'node:crypto'
import type { ServerFilter, ServerObject } from '../../schemas/servers.js'
import { ApiError } from '../core/errors.js'
import type { HubServer } from '../hub/client.js'
import { failureCause } from '../progress/steps.js'
import type { PodView } from './pods.js'

/**
 * The server's name: the project path cut to 54 characters, then 8 hex characters of
 * md5(namespace + project + branch + commit_sha); at most 63 characters in all.
 */
export function serverName(namespace: string, project: string, branch: string, commitSha: string): string {
  const digest = createHash('md5')
    .update(namespace + project + branch + commitSha)
    .digest('hex')
  return `${project.slice(0, 54)}-${digest.slice(0, 8)}`
}

/** No server name is longer (`serverName` keeps to it, as Kubernetes label values must). */
export const MAX_SERVER_NAME_LENGTH = 63

/** Whether a server could have this name; one that cannot names no server, so it is a 404. */
export function couldBeServerName(name: string): boolean {
  return name.length >= 1 && name.length <= MAX_SERVER_NAME_LENGTH
}

export function noSuchServer(name: string): ApiError {
  return new ApiError(
    404,
    'SERVER_NOT_FOUND',
    couldBeServerName(name)
      ? `You have no server named ${name}.`
      : `No server has a name like that (names are 1 to ${MAX_SERVER_NAME_LENGTH} characters).`,
  )
}

/** Where a user's named server answers: `<origin><base>user/<user>/<name>/`. */
export function serverUrl(origin: string, baseUrl: string, user: string, name: string): string {
  return `${origin}${baseUrl}user/${encodeURIComponent(user)}/${encodeURIComponent(name)}/`
}

const annotationKeys: Record<string, string> = {
  namespace: 'renku.io/namespace',
  project: 'renku.io/projectName',
  branch: 'renku.io/branch',
  commit_sha: 'renku.io/commit-sha',
  project_id: 'renku.io/gitlabProjectId',
  repository: 'renku.io/repository',
  autosave: 'renku.io/autosave',
  volume: 'renku.io/volume',
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return undefined
}

/** The annotations a server's pod carries, derived from the launch's user options. */
function annotationsOf(user: string, options: Record<string, unknown>): Record<string, string> {
  const annotations: Record<string, string> = { 'renku.io/username': user }
  for (const [option, key] of Object.entries(annotationKeys)) {
    const value = text(options[option])
    if (value !== undefined) annotations[key] = value
  }
  if (typeof options.default_image_used === 'boolean') {
    annotations['renku.io/default_image_used'] = options.default_image_used ? 'True' : 'False'
  }
  return annotations
}

function resourcesOf(options: Record<string, unknown>): ServerObject['resources'] {
  const chosen = (options.server_options ?? {}) as Record<string, unknown>
  const resources: ServerObject['resources'] = {}
  const pairs: [keyof ServerObject['resources'], string][] = [
    ['cpu', 'cpu_request'],
    ['memory', 'mem_request'],
    ['storage', 'disk_request'],
    ['gpu', 'gpu_request'],
  ]
  for (const [resource, option] of pairs) {
    const value = text(chosen[option])
    if (value !== undefined) resources[resource] = value
  }
  return resources
}

/** `status.reason` of a stopped server whose last start failed. */
export const SPAWN_FAILED = 'SpawnFailed'
/** `status.reason` of a server that did start and was stopped at the hub without being removed. */
export const STOPPED = 'Stopped'

/** The words for a server that is not running, by how its last start ended (when known). */
function notRunning(server: HubServer): Pick<ServerObject['status'], 'message' | 'reason'> {
  const lastStart = server.last_start
  if (lastStart?.outcome === 'failed') {
    return {
      message: `${failureCause(lastStart.message)} Launch it again to retry, or stop it to remove it.`,
      reason: SPAWN_FAILED,
    }
  }
  if (lastStart?.outcome === 'started') {
    return {
      message:
        'The server was stopped (for example after being idle); launch it again to go on, or stop it to remove it.',
      reason: STOPPED,
    }
  }
  // Not known yet (asked once per stop), or the hub could not tell.
  return { message: 'The server is not running; launch it again to go on, or stop it to remove it.' }
}

function statusOf(server: HubServer, pod?: PodView): ServerObject['status'] {
  const detail = pod
    ? {
        phase: pod.phase,
        ...(pod.step !== undefined && { step: pod.step }),
        ...(pod.message !== undefined && { message: pod.message }),
        ...(pod.reason !== undefined && { reason: pod.reason }),
      }
    : {}
  if (server.pending === 'stop' || pod?.terminating) return { state: 'stopping', ready: false, ...detail }
  if (server.stopped || (!server.ready && !server.pending)) {
    return { state: 'failed', ready: false, ...notRunning(server), ...detail }
  }
  if (pod?.failed) return { state: 'failed', ready: false, ...detail }
  if (server.ready && (!pod || pod.ready)) return { state: 'running', ready: true, ...detail }
  return { state: 'starting', ready: false, ...detail }
}

/** The server object (the OpenAPI `Server` schema), from the hub's server and, where known, its pod. */
export function toServerObject(
  hub: { origin: string; baseUrl: string },
  user: string,
  server: HubServer,
  pod?: PodView,
): ServerObject {
  const options = server.user_options ?? {}
  // The pod's label holds the escaped user name; the annotation keeps the hub's own.
  const annotations = {
    ...annotationsOf(user, options),
    ...pickRenku(pod?.annotations),
    'renku.io/username': user,
  }
  return {
    name: server.name,
    url: serverUrl(hub.origin, hub.baseUrl, user, server.name),
    started: server.started,
    image: text(options.image) ?? null,
    annotations,
    resources: { ...resourcesOf(options), ...pod?.resources },
    status: statusOf(server, pod),
    // A pod found by its labels names itself, so logs and forced deletion can reach it.
    state: { ...(pod && { pod_name: pod.name }), ...server.state },
  }
}

function pickRenku(annotations: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(annotations ?? {}).filter(([key]) => key.startsWith('renku.io/')))
}

/** Whether a server matches every given filter exactly. */
export function matchesFilter(server: ServerObject, filter: ServerFilter): boolean {
  const wanted: [string | undefined, string][] = [
    [filter.namespace, 'renku.io/namespace'],
    [filter.project, 'renku.io/projectName'],
    [filter.branch, 'renku.io/branch'],
    [filter.commit_sha?.toLowerCase(), 'renku.io/commit-sha'],
  ]
  return wanted.every(([value, key]) => value === undefined || server.annotations[key] === value)
}
