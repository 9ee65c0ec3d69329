import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'

const checkInterval = 5_000

const ReadySchema = Type.Object({
  ok: Type.Boolean(),
  checks: Type.Record(Type.String(), Type.Boolean(), {
    description: 'Each configured upstream: reachable or not.',
  }),
})

/** Liveness and readiness probes; no authentication. */
const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const checks: Record<string, () => Promise<void>> = {
    jupyterhub: () => fastify.jupyterhub.ping(),
    gitlab: () => fastify.gitlab.ping(),
  }
  const kubernetes = fastify.kubernetes
  if (kubernetes) checks.kubernetes = () => kubernetes.ping()

  // Each result is kept a few seconds, so probes cannot load the upstreams.
  const results = new Map<string, { at: number; ok: Promise<boolean> }>()
  function check(name: string, run: () => Promise<void>): Promise<boolean> {
    const cached = results.get(name)
    if (cached && Date.now() - cached.at < checkInterval) return cached.ok
    const ok = run().then(
      () => true,
      (err: unknown) => {
        fastify.log.warn({ check: name, err: (err as Error).message }, 'readiness check failed')
        return false
      },
    )
    results.set(name, { at: Date.now(), ok })
    return ok
  }

  fastify.get(
    '/health',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'health',
        summary: 'Liveness: 200 while the process serves',
        tags: ['health'],
        response: { 200: Type.Object({ ok: Type.Literal(true) }, { description: 'The process serves.' }) },
      },
    },
    async () => ({ ok: true as const }),
  )

  fastify.get(
    '/ready',
    {
      logLevel: 'warn',
      schema: {
        operationId: 'ready',
        summary: 'Readiness: whether the configured upstreams answer',
        tags: ['health'],
        response: {
          200: { ...ReadySchema, description: 'Every configured upstream answers.' },
          503: { ...ReadySchema, description: 'An upstream (false in `checks`) fails.' },
        },
      },
    },
    async (_request, reply) => {
      const names = Object.keys(checks)
      const outcomes = await Promise.all(
        names.map((name) => check(name, checks[name] as () => Promise<void>)),
      )
      const body = {
        ok: outcomes.every(Boolean),
        checks: Object.fromEntries(names.map((name, i) => [name, outcomes[i] === true])),
      }
      return reply.code(body.ok ? 200 : 503).send(body)
    },
  )

  // The prefix itself leads a person to the API's documentation.
  fastify.get('/', { schema: { hide: true } }, async (_request, reply) =>
    reply.redirect(`${fastify.config.servicePrefix}docs`, 302),
  )

  fastify.get(
    '/openapi.json',
    {
      schema: {
        operationId: 'openapi',
        summary: 'This OpenAPI 3 document',
        tags: ['docs'],
        response: {
          200: Type.Object({}, { additionalProperties: true, description: 'The OpenAPI 3 document.' }),
        },
      },
    },
    async () => fastify.swagger(),
  )
}

export default healthRoutes
