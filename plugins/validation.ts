/**
 * Request validation: the shared schemas (referenced by `$ref` in routes and the OpenAPI
 * document), bodies checked without coercion and the other parts with it, JSON bodies only.
 */
import { Ajv } from 'ajv'
import fp from 'fastify-plugin'
import { AutosaveListSchema, AutosaveSchema } from '../schemas/autosave.js'
import { ErrorSchema } from '../schemas/common.js'
import { ProgressEventSchema } from '../schemas/progress.js'
import { ServerOptionSchema, ServerOptionsSchema } from '../schemas/server-options.js'
import { ServerListSchema, ServerSchema } from '../schemas/servers.js'

export default fp(
  async (fastify) => {
    // Bodies are checked without coercion (the string "1.0" is not a number); query
    // strings and path parameters are text on the wire, so they are coerced.
    const bodyAjv = new Ajv({ coerceTypes: false, useDefaults: true, allErrors: true, strict: false })
    const textAjv = new Ajv({ coerceTypes: 'array', useDefaults: true, allErrors: true, strict: false })
    for (const schema of [
      ErrorSchema,
      ServerOptionSchema,
      ServerOptionsSchema,
      ServerSchema,
      ServerListSchema,
      AutosaveSchema,
      AutosaveListSchema,
      ProgressEventSchema,
    ]) {
      bodyAjv.addSchema(schema)
      textAjv.addSchema(schema)
      fastify.addSchema(schema)
    }
    fastify.setValidatorCompiler(
      ({ schema, httpPart }) =>
        (httpPart === 'body' ? bodyAjv : textAjv).compile(schema as object) as ReturnType<Ajv['compile']>,
    )
    // JSON bodies only, so a cross-site form cannot act with a user's cookie.
    fastify.removeContentTypeParser(['text/plain'])
  },
  { name: 'validation' },
)
