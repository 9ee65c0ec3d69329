import fp from 'fastify-plugin'
import type { Config } from '../lib/core/config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** Makes the configuration, read once at start-up by the caller, available to every plugin and route. */
export default fp<{ config: Config }>(
  async (fastify, { config }) => {
    fastify.decorate('config', config)
  },
  { name: 'config' },
)
