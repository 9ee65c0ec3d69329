import fp from 'fastify-plugin'
import { GitLabClient } from '../lib/gitlab/client.js'

declare module 'fastify' {
  interface FastifyInstance {
    gitlab: GitLabClient
  }
}

/**
 * GitLab's REST API v4, called with each user's own GitLab token.
 * @see {@link https://docs.gitlab.com/api/rest/}
 */
export default fp(
  async (fastify) => {
    fastify.decorate(
      'gitlab',
      new GitLabClient({
        url: fastify.config.gitlabUrl,
        timeoutMs: fastify.config.upstreamTimeoutMs,
        observe: fastify.metrics.observeUpstream,
      }),
    )
  },
  { name: 'gitlab', dependencies: ['config', 'metrics'] },
)
