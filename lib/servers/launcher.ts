import type { LaunchRequest, ServerObject } from '../../schemas/servers.js'
import type { UserOptions } from '../../schemas/user-options.js'
import type { Config } from '../core/config.js'
import { ApiError, UpstreamError } from '../core/errors.js'
import type { UpstreamObserver } from '../core/metrics.js'
import { autosavesOf, autosaveToRestore, launchAutosavePrefix } from '../gitlab/autosaves.js'
import type { GitLabBranch, GitLabClient, GitLabProject } from '../gitlab/client.js'
import { imageExists, parseImage } from '../gitlab/image-registry.js'
import type { JupyterHubClient } from '../hub/client.js'
import type { ServerDirectory } from './directory.js'
import { resolveServerOptions } from './options.js'
import { gitlabTokenOf, requireChangeAccess } from './project-access.js'
import { serverName } from './server-object.js'
import type { SessionVolumes } from './volumes.js'

export interface LaunchResult {
  /** 201 the server is up, 202 it is starting, 200 it already existed. */
  status: 200 | 201 | 202
  server: ServerObject
}

export interface LauncherOptions {
  hub: JupyterHubClient
  gitlab: GitLabClient
  directory: ServerDirectory
  config: Pick<
    Config,
    'serverOptions' | 'minAccessLevel' | 'imageRegistry' | 'defaultImage' | 'upstreamTimeoutMs'
  >
  /** Kept volumes of servers, when session volumes are on. */
  sessionVolumes?: SessionVolumes | null
  /** Where a failure that does not fail the launch is told. */
  log?: { warn(obj: object, msg: string): void }
  /** Told of the image registry calls (the hub and GitLab clients have their own). */
  observeUpstream?: UpstreamObserver
}

/** The autosaves of a launch: the one to restore, and how to discard them all. */
interface LaunchAutosaves {
  restore: Promise<string | undefined>
  discard: () => void
}

interface ResolvedImage {
  image: string
  defaultImageUsed: boolean
}

/** A launch (`POST servers`): checks in GitLab, then one named server at the hub. */
export class Launcher {
  /** Launches under way, so identical concurrent requests of one user share one. */
  private readonly inFlight = new Map<string, Promise<LaunchResult>>()

  constructor(private readonly options: LauncherOptions) {}

  async launch(user: string, request: LaunchRequest): Promise<LaunchResult> {
    const { hub, gitlab, config } = this.options
    const serverOptions = resolveServerOptions(config.serverOptions, request.serverOptions)
    const explicitImage = request.image === undefined ? undefined : parseImage(request.image)
    if (explicitImage === null) {
      throw new ApiError(422, 'VALIDATION_ERROR', 'The image is not a valid image name.', {
        fields: {
          part: 'json',
          errors: { image: ['is not a valid image name such as registry.example.com/ns/name:tag'] },
        },
      })
    }

    // The GitLab token is only in the hub's user model (never in the copy): one read per launch.
    const token = await gitlabTokenOf(hub, user)
    // Beside the project lookup; its refusal counts only once the project is known to exist.
    const scopeCheck = gitlab.requirePushScope(token)
    scopeCheck.catch(() => {})
    const project = await gitlab.getProject(token, `${request.namespace}/${request.project}`)
    await scopeCheck
    requireChangeAccess(project, config.minAccessLevel, 'Launching a server for')
    const branch = request.branch ?? project.default_branch ?? 'master'
    // Looked up beside the other checks, used only if a new server starts (the sha's first 7
    // characters are the resolved commit's, or the commit check fails).
    const branches = gitlab.listBranches(
      token,
      project,
      launchAutosavePrefix(user, branch, request.commit_sha),
    )
    branches.catch(() => {})
    const autosave: LaunchAutosaves = {
      restore: branches.then((found) => autosaveToRestore(found, user, branch, request.commit_sha)),
      // A resumed volume holds the same work and more: the launch's autosaves are then deleted.
      discard: () => this.discardAutosaves(token, project, user, branch, request.commit_sha, branches),
    }
    autosave.restore.catch(() => {})
    const [, commitSha] = await Promise.all([
      gitlab.requireBranch(token, project, branch),
      gitlab.resolveCommit(token, project, request.commit_sha),
    ])
    const image = explicitImage
      ? await this.requireImage(request.image as string, explicitImage, token, project)
      : await this.projectImage(token, project, request, commitSha)

    const name = serverName(request.namespace, request.project, branch, commitSha)
    const userOptions: UserOptions = {
      namespace: request.namespace,
      project: request.project,
      branch,
      commit_sha: commitSha,
      project_id: project.id,
      notebook: request.notebook ?? null,
      image: image.image,
      default_image_used: image.defaultImageUsed,
      repository: project.http_url_to_repo,
      server_options: serverOptions,
    }
    const key = `${user}\n${name}`
    const existing = this.inFlight.get(key)
    if (existing) return existing
    const launch = this.start(user, name, userOptions, autosave).finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, launch)
    return launch
  }

  private async start(
    user: string,
    name: string,
    userOptions: UserOptions,
    autosave: LaunchAutosaves,
  ): Promise<LaunchResult> {
    const { hub, directory, sessionVolumes } = this.options
    // From this replica's copy; a start another replica made meanwhile is answered 202 or 400
    // "already running" by the hub, both handled below.
    const current = await directory.get(user, name)
    if (current && current.status.state !== 'failed') return { status: 200, server: current }
    // A start on a kept volume resumes it as it was; a new server (or a new start of a stopped
    // one without a volume) restores the newest autosave of the launch.
    const resumed = sessionVolumes ? (await sessionVolumes.find(user, name)) !== undefined : false
    const restore = resumed ? undefined : await autosave.restore
    const options: UserOptions = { ...userOptions }
    if (restore) options.autosave = restore
    if (sessionVolumes) options.volume = resumed ? 'resumed' : 'new'
    // The copy shows the start as it is sent and reads the user again once it is answered.
    const outcome = await hub.startServer(user, name, options)
    if (resumed) autosave.discard()
    const server = await directory.get(user, name)
    if (!server) {
      throw new UpstreamError(
        'JupyterHub',
        'bad_response',
        `server ${name} missing after start`,
        'JupyterHub reported that the server failed to start.',
      )
    }
    const status = outcome === 'created' ? 201 : outcome === 'already-running' ? 200 : 202
    return { status, server }
  }

  /** Deletes the launch's autosave branches; a failure is logged (they are listed and deletable). */
  private discardAutosaves(
    token: string,
    project: GitLabProject,
    user: string,
    branch: string,
    commitSha: string,
    branches: Promise<GitLabBranch[]>,
  ): void {
    const commit = commitSha.slice(0, 7).toLowerCase()
    const run = async () => {
      const names = autosavesOf(await branches, user)
        .filter((save) => save.branch === branch && save.commit === commit)
        .map((save) => save.name)
      for (const name of names) await this.options.gitlab.deleteBranch(token, project, name)
    }
    run().catch((err: unknown) =>
      this.options.log?.warn(
        { user, project: project.id, failure: (err as Error).message },
        'could not delete the autosaves of a resumed launch',
      ),
    )
  }

  private async requireImage(
    name: string,
    image: NonNullable<ReturnType<typeof parseImage>>,
    token: string,
    project: GitLabProject,
  ): Promise<ResolvedImage> {
    // The user's GitLab token goes only to GitLab's own registry, never elsewhere.
    const gitlabRegistries = [
      this.options.config.imageRegistry,
      registryHost(project.container_registry_image_prefix),
    ]
    const credentials = gitlabRegistries.includes(image.host)
      ? { username: 'oauth2', password: token }
      : undefined
    const found = await imageExists(image, {
      credentials,
      timeoutMs: this.options.config.upstreamTimeoutMs,
      observe: this.options.observeUpstream,
    })
    if (!found) {
      throw new ApiError(404, 'IMAGE_NOT_FOUND', `The image ${name} does not exist or you may not read it.`)
    }
    return { image: name, defaultImageUsed: false }
  }

  private async projectImage(
    token: string,
    project: GitLabProject,
    request: LaunchRequest,
    commitSha: string,
  ): Promise<ResolvedImage> {
    const { config, gitlab } = this.options
    const prefix = config.imageRegistry
      ? `${config.imageRegistry}/${request.namespace}/${request.project}`
      : project.container_registry_image_prefix
    const tag = commitSha.slice(0, 7)
    if (prefix && (await gitlab.hasImageTag(token, project, tag))) {
      return { image: `${prefix}:${tag}`.toLowerCase(), defaultImageUsed: false }
    }
    return { image: config.defaultImage, defaultImageUsed: true }
  }
}

function registryHost(prefix: string | null | undefined): string | undefined {
  return prefix ? prefix.split('/')[0]?.toLowerCase() : undefined
}
