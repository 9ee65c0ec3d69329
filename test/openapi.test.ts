/**
 * The OpenAPI document: valid OpenAPI 3, every operation named, summarised and tagged,
 * authenticated operations carrying both security schemes (and really refusing callers
 * without credentials), every error response the shared `Error` schema with the codes it
 * carries, and those codes the ones the sources answer with.
 */

import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import SwaggerParser from '@apidevtools/swagger-parser'
import t from 'tap'
import { allErrorCodes, codesOutsideOperations, type ErrorCode, errorCodes } from '../schemas/error-codes.js'
import { build } from './helper.js'

interface Operation {
  operationId?: string
  summary?: string
  tags?: string[]
  security?: Record<string, string[]>[]
  parameters?: { in: string; name: string; required?: boolean }[]
  responses: Record<string, { description?: string; content?: Record<string, { schema?: ResponseSchema }> }>
}
interface ResponseSchema {
  $ref?: string
  allOf?: { $ref?: string; required?: string[]; properties?: { code?: { enum?: string[] } } }[]
}
type Document = {
  openapi: string
  info: { version: string }
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> }
}

const PREFIX = '/services/notebooks/'
const ROOT = path.resolve(import.meta.dirname, '..')
/** Operations anyone may call (the README's "Endpoints"). */
const PUBLIC = new Set(['health', 'ready', 'openapi', 'login', 'oauthCallback', 'logout'])
/** Error responses that are not the Error body, and why. */
const NOT_ERROR_BODY: Record<string, string> = {
  'ready 503': 'readiness answers 503 with its own {ok, checks} shape (README, Endpoints)',
}
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options']

t.test('the OpenAPI document', async (t) => {
  // Upstreams nobody listens on: only requests without credentials are made.
  const app = await build(t, {
    JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
    JUPYTERHUB_API_TOKEN: 'openapi-test-token',
    GITLAB_URL: 'http://127.0.0.1:9',
  })
  await app.ready()
  const doc = app.swagger() as unknown as Document

  await t.test('is valid OpenAPI 3', async (t) => {
    t.match(doc.openapi, /^3\./)
    await t.resolves(SwaggerParser.validate(structuredClone(doc) as never), 'swagger-parser accepts it')
    t.ok(doc.components.schemas.Error, 'the shared Error schema is a component')
    t.same(Object.keys(doc.components.securitySchemes).sort(), ['hubToken', 'session'])
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
    t.equal(doc.info.version, pkg.version, "the document's version is the package's")
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
      'watchServerProgress',
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

  await t.test('the progress stream is documented as text/event-stream of ProgressEvent', async (t) => {
    const op = doc.paths['/servers/{server_name}/progress']?.get
    t.equal(
      op?.responses['200']?.content?.['text/event-stream']?.schema?.$ref,
      '#/components/schemas/ProgressEvent',
    )
    t.match(doc.components.schemas.ProgressEvent, {
      type: 'object',
      required: ['step', 'progress', 'message'],
    })
    t.ok(
      op?.parameters?.some((p) => p.in === 'header' && p.name === 'last-event-id'),
      'Last-Event-ID',
    )
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

  /** Each operation's documented codes, from its error responses. */
  const documented = new Map<string, Set<ErrorCode>>()

  await t.test('every error response is the shared Error schema, with the codes it carries', async (t) => {
    for (const { method, path, op } of operations) {
      const codes = new Set<ErrorCode>()
      documented.set(op.operationId as string, codes)
      for (const [status, response] of Object.entries(op.responses)) {
        // 3xx are redirects without a body.
        if (!/^[45]/.test(status)) continue
        const key = `${op.operationId} ${status}`
        if (NOT_ERROR_BODY[key]) continue
        const where = `${method.toUpperCase()} ${path} ${status}`
        const schema = response.content?.['application/json']?.schema
        t.equal(schema?.allOf?.[0]?.$ref, '#/components/schemas/Error', `${where}: an Error`)
        const narrowed = schema?.allOf?.[1]
        t.same(narrowed?.required, ['code'], `${where}: whose code is given`)
        const enumerated = narrowed?.properties?.code?.enum ?? []
        t.ok(enumerated.length, `${where}: lists its codes`)
        for (const code of enumerated) {
          t.ok(Object.hasOwn(errorCodes, code), `${where}: ${code} is a known code`)
          t.equal(errorCodes[code as ErrorCode]?.status, Number(status), `${where}: ${code} has this status`)
          t.match(response.description, `\`${code}\``, `${where}: the description explains ${code}`)
          codes.add(code as ErrorCode)
        }
      }
    }
  })

  await t.test('the error codes are the ones the service answers with', async (t) => {
    const schema = doc.components.schemas.Error as { properties: { code: { enum: string[] } } }
    t.same(schema.properties.code.enum, allErrorCodes, 'Error.code is an enum of every code')

    const answered = await answeredCodes()
    for (const code of allErrorCodes)
      t.ok(answered.codes.has(code), `${code} is answered somewhere in the sources`)
    for (const [status, code, where] of answered.constructed) {
      t.equal(status, errorCodes[code].status, `${where}: ${code} is answered with its registered status`)
    }
    t.ok(answered.constructed.length > 30, 'the error sites were found')

    const byOperations = new Set([...documented.values()].flatMap((codes) => [...codes]))
    for (const code of allErrorCodes) {
      if (codesOutsideOperations.includes(code)) {
        t.notOk(byOperations.has(code), `${code} comes before or outside any operation`)
      } else {
        t.ok(byOperations.has(code), `${code} is documented by an operation`)
      }
    }

    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8')
    for (const code of allErrorCodes) t.ok(readme.includes(`\`${code}\``), `the README lists ${code}`)
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
    for (const url of [PREFIX, PREFIX.replace(/\/$/, '')]) {
      const home = await app.inject({ url })
      t.equal(home.statusCode, 302, `${url} redirects`)
      t.equal(home.headers.location, `${PREFIX}docs`, `${url}: to the docs`)
    }
  })
})

/** The service's sources; the code list itself and the configuration (variable names) aside. */
const SOURCE_DIRS = ['.', 'lib', 'plugins', 'routes']
const NOT_ANSWERING = new Set(['schemas/error-codes.ts', 'lib/core/config.ts'])

/** Text with the argument lists of `errors(...)` (what a route documents) removed. */
function withoutDocumentedCodes(text: string): string {
  let out = ''
  let at = 0
  for (let start = text.indexOf('errors(', at); start !== -1; start = text.indexOf('errors(', at)) {
    out += text.slice(at, start)
    let depth = 0
    let end = start + 'errors'.length
    for (; end < text.length; end++) {
      if (text[end] === '(') depth++
      else if (text[end] === ')' && --depth === 0) break
    }
    at = end + 1
  }
  return out + text.slice(at)
}

/**
 * The codes the sources answer with: every code literal outside the list of codes and the
 * routes' documentation, and the status each `new ApiError(<status>, '<CODE>'` gives it.
 */
async function answeredCodes(): Promise<{
  codes: Set<ErrorCode>
  constructed: [number, ErrorCode, string][]
}> {
  const codes = new Set<ErrorCode>()
  const constructed: [number, ErrorCode, string][] = []
  for (const dir of SOURCE_DIRS) {
    const entries = await readdir(path.join(ROOT, dir), { recursive: dir !== '.', withFileTypes: true })
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue
      const file = path.relative(ROOT, path.join(entry.parentPath, entry.name))
      if (NOT_ANSWERING.has(file)) continue
      const text = withoutDocumentedCodes(await readFile(path.join(ROOT, file), 'utf8'))
      for (const [, literal] of text.matchAll(/'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)'/g)) {
        if (Object.hasOwn(errorCodes, literal as string)) codes.add(literal as ErrorCode)
      }
      for (const [, status, code] of text.matchAll(/new ApiError\(\s*(\d{3}),\s*'([A-Z0-9_]+)'/g)) {
        constructed.push([Number(status), code as ErrorCode, file])
      }
    }
  }
  return { codes, constructed }
}
