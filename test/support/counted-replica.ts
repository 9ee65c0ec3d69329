/**
 * A replica of the service that reaches the stack's hub through a counting proxy, listening on
 * a port of its own: what tests of the hub's load read their counts from.
 */
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { type CountingProxy, startCountingProxy } from '../../dev/counting-proxy.js'
import type { startStack } from '../../dev/stack.js'
import { build } from '../helper.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export async function countedReplica(
  t: Teardown,
  stack: Awaited<ReturnType<typeof startStack>>,
  env: Record<string, string> = {},
): Promise<{ app: FastifyInstance; proxy: CountingProxy; base: string }> {
  const proxy = await startCountingProxy(stack.hub.apiUrl.replace(/\/hub\/api$/, ''))
  t.teardown(() => proxy.close())
  const app = await build(t, {
    JUPYTERHUB_API_URL: `${proxy.url}/hub/api`,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    JUPYTERHUB_ORIGIN: stack.hub.publicUrl,
    GITLAB_URL: stack.gitlab.url,
    ...env,
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    app,
    proxy,
    base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/services/notebooks/`,
  }
}
