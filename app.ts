import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from './lib/core/config.js'
import configPlugin from './plugins/config.js'
import errorHandlingPlugin, { clientErrorHandler, frameworkErrors } from './plugins/error-handling.js'
import gitlabPlugin from './plugins/gitlab.js'
import hubAuthPlugin, { type HubAuthOptions } from './plugins/hub-auth.js'
import hubLoginPlugin from './plugins/hub-login.js'
import jupyterhubPlugin from './plugins/jupyterhub.js'
import kubernetesPlugin from './plugins/kubernetes.js'
import metricsPlugin from './plugins/metrics.js'
import { loggerOptions, OneLinePerRequest } from './plugins/request-log.js'
import serversPlugin from './plugins/servers.js'
import swaggerPlugin from './plugins/swagger.js'
import validationPlugin from './plugins/validation.js'
import authRoutes from './routes/auth.js'
import autosaveRoutes from './routes/autosave.js'
import healthRoutes from './routes/health.js'
import logsRoutes from './routes/logs.js'
import progressRoutes, { type ProgressOptions } from './routes/progress.js'
import serverOptionsRoutes from './routes/server-options.js'
import serversRoutes from './routes/servers.js'
import userRoutes from './routes/user.js'

export interface AppOptions {
  hubAuth?: HubAuthOptions
  /** The progress stream's keep-alive and pod polling intervals (tests shorten them). */
  progress?: ProgressOptions
  /** Where the log goes instead of stdout, e.g. to read it in a test. */
  logStream?: { write(line: string): void }
  /** Extra Fastify options, e.g. a logger for tests. */
  fastify?: FastifyServerOptions
}

/**
 * The service: Fastify with its plugins and routes, under the service prefix.
 * `server.ts` listens; tests build it with their own configuration.
 */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config.logLevel, options.logStream),
    logController: new OneLinePerRequest(),
    // Loading the Kubernetes client lazily can take longer than the default 10 s on a busy machine.
    pluginTimeout: 60_000,
    connectionTimeout: 60_000,
    requestTimeout: 60_000,
    keepAliveTimeout: 72_000,
    // The hub and an ingress sit in front of the service.
    trustProxy: true,
    // No path part is too long to route: Node's header limit (16 KiB) already bounds a URL, and a
    // server name longer than any server's is a 404 of the route, not a 414.
    routerOptions: { maxParamLength: Number.MAX_SAFE_INTEGER },
    frameworkErrors,
    clientErrorHandler,
    ...options.fastify,
  }).withTypeProvider<TypeBoxTypeProvider>()

  await app.register(validationPlugin)
  await app.register(errorHandlingPlugin)
  await app.register(configPlugin, { config })
  // First, so that its hook times every request and the upstream clients can report to it.
  await app.register(metricsPlugin)
  await app.register(swaggerPlugin)
  await app.register(jupyterhubPlugin)
  await app.register(gitlabPlugin)
  await app.register(kubernetesPlugin)
  await app.register(hubLoginPlugin)
  await app.register(hubAuthPlugin, options.hubAuth ?? {})
  await app.register(serversPlugin)

  const prefix = config.servicePrefix.replace(/\/$/, '')
  await app.register(healthRoutes, { prefix })
  await app.register(serversRoutes, { prefix })
  await app.register(logsRoutes, { prefix })
  await app.register(progressRoutes, { prefix, ...options.progress })
  await app.register(serverOptionsRoutes, { prefix })
  await app.register(userRoutes, { prefix })
  await app.register(authRoutes, { prefix })
  // Last: its catch-all route for namespaces with raw slashes yields to every other route.
  await app.register(autosaveRoutes, { prefix })
  return app
}
