import fp from 'fastify-plugin'
import { JupyterHubClient } from '../lib/hub/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    jupyterhub: JupyterHubClient
  }
}

/**
 * The hub's REST API with the service's own token.
 * @see {@link https://jupyterhub.readthedocs.io/en/stable/reference/rest-api.html}
 */
export default fp(
  async (fastify) => {
    const { hubApiUrl, hubApiToken, upstreamTimeoutMs } = fastify.config
    fastify.decorate(
      'jupyterhub',
      new JupyterHubClient({
        apiUrl: hubApiUrl,
        apiToken: hubApiToken,
        timeoutMs: upstreamTimeoutMs,
        observe: fastify.metrics.observeUpstream,
      }),
    )
  },
  { name: 'jupyterhub', dependencies: ['config', 'metrics'] },
)
