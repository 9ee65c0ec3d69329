/**
 * The whole stack for integration tests, the local stack and the benchmark: the GitLab
 * stand-in with the fixture world, a real JupyterHub with the local spawner, and the
 * service on a real port, configured as in production through `loadConfig`.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../app.js'
import { type Config, loadConfig } from '../lib/core/config.js'
import { createWorld, type FixtureUserName, type World } from './gitlab-world.js'
import { type Hub, type HubUser, startHub } from './hub.js'
import { freePort, loopbackAlias } from './ports.js'
import { type GitLabStandIn, startGitLab } from './stand-ins/gitlab/index.js'

export interface StackOptions {
  /** Extra environment for the hub (`JHUB_NAMED_SERVER_LIMIT`, `JHUB_SLOW_SPAWN_TIMEOUT`…). */
  hubEnv?: Record<string, string>
  /** Extra service configuration, as environment variables. */
  serviceEnv?: Record<string, string>
  /**
   * The GitLab stand-in under this machine's host name rather than 127.0.0.1 (`loopbackAlias`
   * in dev/ports.ts), when it has one: git-lfs in a notebook then goes through the server's git
   * proxy, as it does with a real GitLab.
   */
  gitlabByHostName?: boolean
  /** Host and port for the service; a free loopback port by default. */
  host?: string
  port?: number
}

export interface ApiResponse<T = unknown> {
  status: number
  body: T
  headers: Headers
}

// biome-ignore lint/suspicious/noExplicitAny: tests read the JSON answers of many shapes
export type Call = <T = any>(
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<ApiResponse<T>>

export interface Stack {
  world: World
  gitlab: GitLabStandIn
  hub: Hub
  app: FastifyInstance
  config: Config
  serviceToken: string
  /** e.g. `http://127.0.0.1:40100/services/notebooks/` */
  serviceUrl: string
  /** e.g. `http://127.0.0.1:40101/metrics`; null when `METRICS_PORT=0`. */
  metricsUrl: string | null
  /** Hub users, one per fixture GitLab user, with their GitLab token in auth_state. */
  users: Record<FixtureUserName, HubUser>
  /** Calls the service as a user (or with no token when `user` is null). */
  as(user: HubUser | null): Call
  stop(): Promise<void>
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dir = await mkdtemp(path.join(tmpdir(), 'renku-world-'))
  const cleanups: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })]
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  }
  try {
    const world = await createWorld(dir)
    const alias = options.gitlabByHostName ? await loopbackAlias() : undefined
    const gitlab = await startGitLab(world, alias ?? {})
    cleanups.push(() => gitlab.close())
    const host = options.host ?? '127.0.0.1'
    const port = options.port ?? (await freePort())
    const serviceToken = randomBytes(24).toString('hex')
    // Session volumes are the hub's to keep and the service's to list: one switch for both.
    const sessionVolumes = /^(true|1|yes|on)$/i.test(
      options.serviceEnv?.NOTEBOOKS_SESSION_VOLUMES?.trim() ?? '',
    )
    const hub = await startHub({
      serviceUrl: `http://${host}:${port}`,
      serviceToken,
      // The hub checks and refreshes users' GitLab tokens when it saves a stopping server's work.
      env: {
        JHUB_GITLAB_URL: gitlab.url,
        JHUB_GITLAB_CLIENT_ID: world.oauthApplication.uid,
        JHUB_GITLAB_CLIENT_SECRET: world.oauthApplication.secret,
        ...(sessionVolumes && { JHUB_SESSION_VOLUMES: '1' }),
        ...options.hubEnv,
      },
    })
    cleanups.push(() => hub.stop())
    const config = loadConfig({
      JUPYTERHUB_API_URL: hub.apiUrl,
      JUPYTERHUB_API_TOKEN: serviceToken,
      JUPYTERHUB_ORIGIN: hub.publicUrl,
      JUPYTERHUB_OAUTH_CALLBACK_URL: hub.oauthRedirectUri,
      GITLAB_URL: gitlab.url,
      NOTEBOOKS_LOGS_DIR: hub.logsDir,
      NOTEBOOKS_VOLUMES_DIR: path.join(hub.runDir, 'volumes'),
      LOG_LEVEL: process.env.SERVICE_LOG_LEVEL ?? 'silent',
      HOST: host,
      PORT: String(port),
      // A free port, not 9090, so that stacks can run side by side.
      METRICS_PORT: String(await freePort()),
      ...options.serviceEnv,
    })
    const app = await buildApp(config)
    cleanups.push(() => app.close())
    await app.listen({ host: config.host, port: config.port })
    const metricsUrl = await app.listenForMetrics()
    const serviceUrl = `http://${host}:${port}${config.servicePrefix}`

    const users = {} as Record<FixtureUserName, HubUser>
    for (const [name, user] of Object.entries(world.users) as [
      FixtureUserName,
      World['users'][FixtureUserName],
    ][]) {
      users[name] = await hub.createUser(name, user.token)
    }

    const as =
      (user: HubUser | null): Call =>
      async (method, route, body, headers = {}) => {
        const response = await fetch(new URL(route, serviceUrl), {
          method,
          headers: {
            accept: 'application/json',
            ...(user && { authorization: `token ${user.token}` }),
            ...(body !== undefined && { 'content-type': 'application/json' }),
            ...headers,
          },
          body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
          redirect: 'manual',
        })
        const text = await response.text()
        let parsed: unknown = text
        try {
          parsed = text ? JSON.parse(text) : null
        } catch {
          // not JSON: keep the text
        }
        // biome-ignore lint/suspicious/noExplicitAny: as above
        return { status: response.status, body: parsed as any, headers: response.headers }
      }

    return { world, gitlab, hub, app, config, serviceToken, serviceUrl, metricsUrl, users, as, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Polls until `check` returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}
