import fp from 'fastify-plugin'
import { type MetricsListener, ServiceMetrics, serveMetrics } from '../lib/core/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The app's Prometheus metrics (its own registry) and the helpers that count. */
    metrics: ServiceMetrics
    /**
     * Starts the metrics listener on `HOST`:`METRICS_PORT` (once; nothing when the port is 0) and
     * resolves to its URL, or null when off. It closes with the app.
     */
    listenForMetrics: () => Promise<string | null>
  }
}

/**
 * Prometheus metrics: every request timed by method, route pattern and status, and a listener
 * of its own for `GET /metrics`, so the metrics are never reachable through the service prefix.
 * @see {@link https://prometheus.io/docs/instrumenting/exposition_formats/}
 */
export default fp(
  async (fastify) => {
    const metrics = new ServiceMetrics()
    fastify.decorate('metrics', metrics)
    fastify.addHook('onResponse', async (request, reply) => {
      // The route pattern, never the raw URL: one series per route, whatever the names in it.
      metrics.observeRequest(
        request.method,
        request.routeOptions.url,
        reply.statusCode,
        reply.elapsedTime / 1000,
      )
    })

    let listener: Promise<MetricsListener> | undefined
    fastify.decorate('listenForMetrics', async () => {
      const { host, metricsPort } = fastify.config
      if (metricsPort === 0) return null
      listener ??= serveMetrics(metrics.registry, host, metricsPort)
      const { url } = await listener
      fastify.log.info({ url }, 'metrics listening')
      return url
    })
    fastify.addHook('onClose', async () => {
      await (await listener?.catch(() => undefined))?.close()
    })
  },
  { name: 'metrics', dependencies: ['config'] },
)
