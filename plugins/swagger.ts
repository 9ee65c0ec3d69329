import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { SESSION_COOKIE } from '../lib/auth/session.js'

/** The package's version, from package.json: beside the sources, or one level above dist/. */
export function packageVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  for (const candidate of [join(here, '..', 'package.json'), join(here, '..', '..', 'package.json')]) {
    try {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: unknown; version?: unknown }
      if (pkg.name === 'renku-notebooks' && typeof pkg.version === 'string') return pkg.version
    } catch {
      // not there: try the next place
    }
  }
  return 'unknown'
}

/**
 * The OpenAPI 3 document, generated from the routes' schemas, and Swagger UI.
 * Registered before any route, since it collects them as they are added.
 * @see {@link https://github.com/fastify/fastify-swagger}
 */
export default fp(
  async (fastify) => {
    const prefix = fastify.config.servicePrefix
    await fastify.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'renku-notebooks',
          version: packageVersion(),
          description:
            'Launch Jupyter notebook servers for GitLab projects at an exact commit, then list, inspect, ' +
            'read the logs of and stop them. Authenticate with a JupyterHub token (`Authorization: token <t>` ' +
            'or `Bearer <t>`) or by logging in through the hub (`login`).',
        },
        servers: [{ url: prefix.replace(/\/$/, '') }],
        tags: [
          { name: 'servers', description: 'Notebook servers of the caller' },
          { name: 'autosave', description: "The caller's saved work of stopped servers" },
          { name: 'user', description: 'The caller' },
          { name: 'auth', description: 'Login through JupyterHub' },
          { name: 'health', description: 'Probes' },
          { name: 'docs', description: 'This document' },
        ],
        components: {
          securitySchemes: {
            hubToken: {
              type: 'apiKey',
              in: 'header',
              name: 'Authorization',
              description: 'A JupyterHub token: `token <t>` or `Bearer <t>`.',
            },
            session: {
              type: 'apiKey',
              in: 'cookie',
              name: SESSION_COOKIE,
              description: 'The session cookie set by `oauth_callback` after logging in through the hub.',
            },
          },
        },
      },
      // Keep shared schemas under their own names ($id) instead of def-0, def-1…
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
      transform: ({ schema, url }) => ({
        schema,
        url: url.startsWith(prefix) ? url.slice(prefix.length - 1) : url,
      }),
    })
    await fastify.register(swaggerUi, {
      routePrefix: `${prefix}docs`,
      uiConfig: { persistAuthorization: true },
    })
  },
  { name: 'swagger', dependencies: ['config'] },
)
