/**
 * One way for tests to build the app: the environment the test names over defaults that
 * reach nothing (nobody listens on port 9), a silent log, and the app closed when the test ends.
 */
import type { FastifyInstance } from 'fastify'
import { type AppOptions, buildApp } from '../app.js'
import { loadConfig } from '../lib/core/config.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export const UNREACHABLE_HUB = 'http://127.0.0.1:9/hub/api'
export const UNREACHABLE_GITLAB = 'http://127.0.0.1:9'

export async function build(
  t: Teardown,
  env: Record<string, string | undefined> = {},
  options: AppOptions = {},
): Promise<FastifyInstance> {
  const app = await buildApp(
    loadConfig({
      JUPYTERHUB_API_URL: UNREACHABLE_HUB,
      JUPYTERHUB_API_TOKEN: 'test-service-token',
      GITLAB_URL: UNREACHABLE_GITLAB,
      LOG_LEVEL: 'silent',
      ...env,
    }),
    options,
  )
  t.teardown(() => app.close())
  return app
}
