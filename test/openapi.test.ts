/**
 * The OpenAPI document: valid OpenAPI 3, every operation named, summarised and tagged,
 * authenticated operations carrying both security schemes (and really refusing callers
 * without credentials), and every error response the shared `Error` schema.
 */
import SwaggerParser from '@apidevtools/swagger-parser'
import t from 'tap'
import { buildApp } from '../app.js'
import { loadConfig } from '../lib/config.js'

interface Operation {
  operationId?: string
  summary?: string
  tags?: string[]
  security?: Record<string, string[]>[]
  parameters?: { in: string; name: string; required?: boolean }[]
  responses: Record<
    string,
    { description?: string; content?: Record<string, { schema?: { $ref?: string } }> }
  >
}
type Document = {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }
}

const PREFIX = '/services/notebooks/'
/** Operations anyone may call (the server options hold nothing per user). */
const PUBLIC = new Set(['health', 'ready', 'openapi', 'login', 'oauthCallback', 'logout', 'getServerOptions'])
/** Error responses that are not the Error body, and why. */
const NOT_ERROR_BODY: Record<string, string> = {
  'ready 503': 'readiness answers 503 with its own {ok, checks} shape (SPEC section 4)',
}
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']

t.test('the OpenAPI document', async (t) => {
  // Upstreams nobody listens on: only requests without credentials are made.
  const app = await buildApp(
    loadConfig({
      JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
      JUPYTERHUB_API_TOKEN: 'openapi-test-token',
      GITLAB_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'silent',
    }),
  )
  t.teardown(() => app.close())
  await app.ready()
  const doc = app.swagger() as unknown as Document

  await t.test('is valid OpenAPI 3', async (t) => {
    t.match(doc.openapi, /^3\./)
    await t.resolves(SwaggerParser.validate(structuredClone(doc) as never), 'swagger-parser accepts it')
    t.ok(doc.components.schemas.Error, 'the shared Error schema is a component')
    t.same(Object.keys(doc.components.securitySchemes).sort(), ['hubToken', 'session'])
  })

  const operations: { method: string; path: string; op: Operation }[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method]
      if (op) operations.push({ method, path, op })
    }
  }

  await t.test('documents every route of the service', async (t) => {
    const ids = operations.map(({ op }) => op.operationId)
    for (const id of [
      'launchServer',
      'listServers',
      'getServer',
      'stopServer',
      'getServerOptions',
      'getServerLogs',
      'listAutosaves',
      'deleteAutosave',
      'getUser',
      'login',
      'oauthCallback',
      'logout',
      'health',
      'ready',
      'openapi',
    ]) {
      t.ok(ids.includes(id), id)
    }
    t.notOk(
      Object.keys(doc.paths).some((path) => path.includes('*')),
      'no catch-all route (raw slashes in autosave paths) is documented',
    )
    t.ok(doc.paths['/{namespace}/{project}/autosave']?.get, 'autosaves by project')
    t.ok(doc.paths['/{namespace}/{project}/autosave/{name}']?.delete, 'one autosave')
  })

  await t.test('every operation has an operationId, a summary and tags', async (t) => {
    const seen = new Set<string>()
    for (const { method, path, op } of operations) {
      const where = `${method.toUpperCase()} ${path}`
      t.match(op.operationId, /^[a-zA-Z][a-zA-Z0-9]*$/, `${where}: operationId`)
      t.notOk(seen.has(op.operationId as string), `${where}: operationId is unique`)
      seen.add(op.operationId as string)
      t.ok(op.summary?.trim(), `${where}: summary`)
      t.ok(op.tags?.length, `${where}: tags`)
    }
  })

  await t.test('authenticated operations carry both security schemes and a 401', async (t) => {
    for (const { method, path, op } of operations) {
      const where = `${method.toUpperCase()} ${path} (${op.operationId})`
      if (PUBLIC.has(op.operationId as string)) {
        t.same(op.security ?? [], [], `${where}: public`)
        continue
      }
      t.same(op.security, [{ hubToken: [] }, { session: [] }], `${where}: token header or session cookie`)
      t.ok(op.responses['401'], `${where}: documents 401`)
    }
  })

  await t.test('every error response is the shared Error schema', async (t) => {
    for (const { method, path, op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        // 3xx are redirects without a body.
        if (!/^[45]/.test(status)) continue
        const key = `${op.operationId} ${status}`
        if (NOT_ERROR_BODY[key]) continue
        t.equal(
          response.content?.['application/json']?.schema?.$ref,
          '#/components/schemas/Error',
          `${method.toUpperCase()} ${path} ${status}`,
        )
        t.ok(response.description?.trim(), `${key}: described`)
      }
    }
  })

  await t.test('what the document says about security is what the service does', async (t) => {
    for (const { method, path, op } of operations) {
      const url = `${PREFIX}${path.replace(/^\//, '')}`.replace(/\{[^}]+\}/g, 'some-name')
      const res = await app.inject({
        method: method.toUpperCase() as 'GET',
        url,
        headers: {
          accept: 'application/json',
          ...(method === 'post' && { 'content-type': 'application/json' }),
        },
        ...(method === 'post' && { payload: '{}' }),
      })
      const where = `${method.toUpperCase()} ${url}`
      if (PUBLIC.has(op.operationId as string)) {
        t.not(res.statusCode, 401, `${where}: open without credentials`)
        continue
      }
      t.equal(res.statusCode, 401, `${where}: refused without credentials`)
      t.equal(res.json().code, 'NOT_AUTHENTICATED')
    }
  })

  await t.test('is served, with Swagger UI', async (t) => {
    const served = await app.inject({ url: `${PREFIX}openapi.json` })
    t.equal(served.statusCode, 200)
    t.same(served.json(), JSON.parse(JSON.stringify(doc)))
    const ui = await app.inject({ url: `${PREFIX}docs/` })
    t.equal(ui.statusCode, 200)
    t.match(ui.headers['content-type'], /text\/html/)
  })
})
