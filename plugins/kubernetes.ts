import fp from 'fastify-plugin'
import type { LogSource, PodInspector } from '../lib/pods.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Pod status and logs from the Kubernetes API; null when Kubernetes is not configured. */
    kubernetes: (PodInspector & LogSource) | null
  }
}

export default fp(
  async (fastify) => {
    fastify.decorate('kubernetes', null)
  },
  { name: 'kubernetes', dependencies: ['config'] },
)
