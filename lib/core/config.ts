import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ServerOptionSchema, type ServerOptions } from '../../schemas/server-options.js'

/** The service's configuration, read from the environment (the README's "Configuration"). */
export interface Config {
  /** Hub API base without a trailing slash, e.g. `http://hub:8081/hub/api`. */
  hubApiUrl: string
  hubApiToken: string
  /** Starts and ends with `/`. */
  servicePrefix: string
  /** Starts and ends with `/`. */
  hubBaseUrl: string
  /** `scheme://host[:port]` or empty. */
  hubOrigin: string
  oauthClientId: string
  oauthCallbackUrl: string
  /** Without a trailing slash. */
  gitlabUrl: string
  imageRegistry?: string
  defaultImage: string
  serverOptions: ServerOptions
  minAccessLevel: number
  /** Kubernetes: namespace of the server pods, when set explicitly. */
  kubernetesNamespace?: string
  /** Kubernetes: path of a kubeconfig file (`KUBECONFIG`). */
  kubeconfig?: string
  /** Kubernetes: running in a pod with a service account (`KUBERNETES_SERVICE_HOST`). */
  inCluster: boolean
  /** Read server logs from `<dir>/<user>--<server>.log` instead of Kubernetes (the local stack). */
  logsDir?: string
  /** Keep each server's working directory on a volume of its own (`NOTEBOOKS_SESSION_VOLUMES`). */
  sessionVolumes: boolean
  /** How long a stopped server's volume is kept (`NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS`), in ms. */
  sessionVolumeRetentionMs: number
  /** The local stack's kept work directories, `<dir>/<user>/<server>/volume.json` (`NOTEBOOKS_VOLUMES_DIR`). */
  volumesDir?: string
  /** How long any upstream call may take (`NOTEBOOKS_UPSTREAM_TIMEOUT`, seconds). */
  upstreamTimeoutMs: number
  host: string
  port: number
  /** Port of the Prometheus metrics listener on `host` (`METRICS_PORT`); 0 turns it off. */
  metricsPort: number
  logLevel: string
}

/** A configuration problem, reported as one line naming the variable. */
export class ConfigError extends Error {
  constructor(variable: string, problem: string) {
    super(`${variable} ${problem}`)
    this.name = 'ConfigError'
  }
}

export const bundledServerOptionsPath = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'config',
  'server-options.json',
)
// Works from the sources and from dist/, where config/ sits one level further up.
const serverOptionsCandidates = [
  bundledServerOptionsPath,
  join(dirname(bundledServerOptionsPath), '..', '..', 'config', 'server-options.json'),
]

const serverOptionsCheck = TypeCompiler.Compile(Type.Record(Type.String(), ServerOptionSchema))
const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

type Env = Record<string, string | undefined>

function value(env: Env, name: string): string | undefined {
  const v = env[name]?.trim()
  return v === undefined || v === '' ? undefined : v
}

function required(env: Env, name: string): string {
  const v = value(env, name)
  if (v === undefined) throw new ConfigError(name, 'is required but not set.')
  return v
}

function httpUrl(name: string, raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(name, 'is not a valid URL (expected http:// or https://…).')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(name, 'must be an http:// or https:// URL.')
  }
  return url.toString().replace(/\/+$/, '')
}

function pathPrefix(name: string, raw: string): string {
  if (!raw.startsWith('/') || /[\s?#]/.test(raw)) {
    throw new ConfigError(name, 'must be a URL path starting with "/".')
  }
  return raw.endsWith('/') ? raw : `${raw}/`
}

function integer(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}.`)
  }
  return Number(raw)
}

const trueWords = new Set(['true', '1', 'yes', 'on'])
const falseWords = new Set(['false', '0', 'no', 'off'])

function boolean(name: string, raw: string): boolean {
  const word = raw.toLowerCase()
  if (trueWords.has(word)) return true
  if (falseWords.has(word)) return false
  throw new ConfigError(name, 'must be true or false.')
}

function positiveHours(name: string, raw: string): number {
  const hours = Number(raw)
  if (!/^\d+(\.\d+)?$/.test(raw) || !(hours > 0) || hours > 24 * 3650) {
    throw new ConfigError(
      name,
      'must be a number of hours above 0 (e.g. 168 for a week, 0.5 for 30 minutes).',
    )
  }
  return hours
}

function origin(name: string, raw: string): string {
  const url = httpUrl(name, raw)
  const parsed = new URL(url)
  if (parsed.pathname !== '/' || parsed.search || parsed.hash) {
    throw new ConfigError(name, 'must be an origin only (scheme://host[:port]), without a path.')
  }
  return parsed.origin
}

export function loadServerOptions(name: string, path: string | undefined): ServerOptions {
  const candidates = path ? [path] : serverOptionsCandidates
  let text: string | undefined
  for (const candidate of candidates) {
    try {
      text = readFileSync(candidate, 'utf8')
      break
    } catch {
      // try the next location
    }
  }
  if (text === undefined) throw new ConfigError(name, `names a file that cannot be read: ${candidates[0]}`)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ConfigError(name, 'names a file that is not valid JSON.')
  }
  if (!serverOptionsCheck.Check(parsed)) {
    const first = serverOptionsCheck.Errors(parsed).First()
    throw new ConfigError(
      name,
      `names a file that is not valid server options: ${first?.path || '/'} ${first?.message}.`,
    )
  }
  for (const [key, option] of Object.entries(parsed)) {
    if (option.type === 'enum' && !option.options?.length) {
      throw new ConfigError(name, `names a file whose enum option "${key}" has no options.`)
    }
  }
  return parsed
}

/** Reads and checks the configuration; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const servicePrefix = pathPrefix(
    'JUPYTERHUB_SERVICE_PREFIX',
    value(env, 'JUPYTERHUB_SERVICE_PREFIX') ?? '/services/notebooks/',
  )
  const hubOrigin = value(env, 'JUPYTERHUB_ORIGIN')
  const callback = value(env, 'JUPYTERHUB_OAUTH_CALLBACK_URL')
  const registry = value(env, 'IMAGE_REGISTRY')
  const logLevel = value(env, 'LOG_LEVEL') ?? 'info'
  if (!logLevels.includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${logLevels.join(', ')}.`)
  if (registry && /[\s/]/.test(registry.replace(/^https?:\/\//, ''))) {
    throw new ConfigError('IMAGE_REGISTRY', 'must be a registry host such as registry.example.com[:port].')
  }
  const logsDir = value(env, 'NOTEBOOKS_LOGS_DIR')
  const port = integer('PORT', value(env, 'PORT') ?? '8000', 0, 65535)
  const metricsPort = integer('METRICS_PORT', value(env, 'METRICS_PORT') ?? '9090', 0, 65535)
  if (metricsPort !== 0 && metricsPort === port) {
    throw new ConfigError('METRICS_PORT', 'must differ from PORT: metrics have a listener of their own.')
  }
  const sessionVolumes = boolean(
    'NOTEBOOKS_SESSION_VOLUMES',
    value(env, 'NOTEBOOKS_SESSION_VOLUMES') ?? 'false',
  )
  const volumesDir = value(env, 'NOTEBOOKS_VOLUMES_DIR')
  const kubeconfig = value(env, 'KUBECONFIG')
  const inCluster = value(env, 'KUBERNETES_SERVICE_HOST') !== undefined
  if (sessionVolumes && !volumesDir && !kubeconfig && !inCluster) {
    throw new ConfigError(
      'NOTEBOOKS_SESSION_VOLUMES',
      'is true, but the volumes have nowhere to live: configure Kubernetes (in a cluster or KUBECONFIG).',
    )
  }
  return {
    hubApiUrl: httpUrl('JUPYTERHUB_API_URL', required(env, 'JUPYTERHUB_API_URL')),
    hubApiToken: required(env, 'JUPYTERHUB_API_TOKEN'),
    servicePrefix,
    hubBaseUrl: pathPrefix('JUPYTERHUB_BASE_URL', value(env, 'JUPYTERHUB_BASE_URL') ?? '/'),
    hubOrigin: hubOrigin ? origin('JUPYTERHUB_ORIGIN', hubOrigin) : '',
    oauthClientId: value(env, 'JUPYTERHUB_CLIENT_ID') ?? 'service-notebooks',
    oauthCallbackUrl: callback
      ? callback.startsWith('/')
        ? callback
        : httpUrl('JUPYTERHUB_OAUTH_CALLBACK_URL', callback)
      : `${servicePrefix}oauth_callback`,
    gitlabUrl: httpUrl('GITLAB_URL', value(env, 'GITLAB_URL') ?? 'https://gitlab.com'),
    imageRegistry: registry?.replace(/^https?:\/\//, '').toLowerCase(),
    defaultImage: value(env, 'NOTEBOOKS_DEFAULT_IMAGE') ?? 'renku/singleuser:latest',
    serverOptions: loadServerOptions(
      'NOTEBOOKS_SERVER_OPTIONS_PATH',
      value(env, 'NOTEBOOKS_SERVER_OPTIONS_PATH'),
    ),
    minAccessLevel: integer(
      'NOTEBOOKS_MIN_ACCESS_LEVEL',
      value(env, 'NOTEBOOKS_MIN_ACCESS_LEVEL') ?? '30',
      0,
      100,
    ),
    kubernetesNamespace: value(env, 'KUBERNETES_NAMESPACE'),
    kubeconfig,
    inCluster,
    logsDir,
    sessionVolumes,
    sessionVolumeRetentionMs: Math.round(
      3_600_000 *
        positiveHours(
          'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS',
          value(env, 'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS') ?? '168',
        ),
    ),
    volumesDir,
    upstreamTimeoutMs:
      1000 * integer('NOTEBOOKS_UPSTREAM_TIMEOUT', value(env, 'NOTEBOOKS_UPSTREAM_TIMEOUT') ?? '10', 1, 600),
    host: value(env, 'HOST') ?? '0.0.0.0',
    port,
    metricsPort,
    logLevel,
  }
}
