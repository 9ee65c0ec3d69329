/**
 * The contract of the README's "Errors" under pressure: 10,000 generated requests straight at the
 * service (a real hub, the GitLab stand-in) never give a 500, every 4xx is the error body
 * with a code the OpenAPI document lists for that operation, and no token comes back;
 * unexpected errors (a throwing handler, hook or serializer, malformed HTTP) still answer
 * the error body without internal text; and the request log writes one line per request.
 */

import { connect } from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { startCountingProxy } from '../../dev/counting-proxy.js'
import { startStack } from '../../dev/stack.js'
import { type ErrorCode, errorCodes } from '../../schemas/error-codes.js'
import { build } from '../helper.js'

const PREFIX = '/services/notebooks'
/** Fixed, so a failure comes back on every run; fast-check prints it with the failing requests. */
const SEED = 20261126
/** Stands for a body over the 1 MiB limit, so failure reports stay short. */
const HUGE = '<1.1 MB of x>'
const BATCHES = 500
const BATCH_SIZE = 20

const stack = await startStack()
t.teardown(() => stack.stop())
const { users, world } = stack

/** Anything that must never come back in an answer. */
const secrets = [
  users.developer.token,
  users.outsider.token,
  stack.serviceToken,
  stack.hub.adminToken,
  world.users.developer.token,
  world.users.outsider.token,
]

// ---- what the document promises ------------------------------------------------------------

interface Operation {
  method: string
  pattern: RegExp
  /** Status to the codes documented for it. */
  codes: Map<number, Set<string>>
}

function documentedOperations(): Operation[] {
  type Doc = {
    paths: Record<
      string,
      Record<
        string,
        {
          responses: Record<
            string,
            {
              content?: {
                'application/json'?: {
                  schema?: { allOf?: { properties?: { code?: { enum?: string[] } } }[] }
                }
              }
            }
          >
        }
      >
    >
  }
  const doc = stack.app.swagger() as unknown as Doc
  const operations: Operation[] = []
  for (const [path, item] of Object.entries(doc.paths)) {
    const pattern = new RegExp(`^${PREFIX}${path.replace(/\{[^}]+\}/g, '[^/]*').replaceAll('.', '\\.')}$`)
    for (const [method, op] of Object.entries(item)) {
      const codes = new Map<number, Set<string>>()
      for (const [status, response] of Object.entries(op.responses)) {
        const listed = response.content?.['application/json']?.schema?.allOf?.[1]?.properties?.code?.enum
        if (listed) codes.set(Number(status), new Set(listed))
      }
      operations.push({ method: method.toUpperCase(), pattern, codes })
    }
  }
  return operations
}

// ---- the requests --------------------------------------------------------------------------

interface FuzzRequest {
  method: string
  url: string
  headers: Record<string, string>
  payload?: string
}

const odd = fc.constantFrom(
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'a.b',
  'a[b]',
  '',
)
const text = (maxLength: number) => fc.string({ maxLength })
const anyJson = fc.jsonValue({ maxDepth: 2 })

const serverName = fc.oneof(
  fc.constantFrom(
    'demo-project-12345678',
    'nope',
    '',
    '.',
    '..',
    '%2F',
    '%2e%2e',
    'a%20b',
    '%ZZ',
    '%',
    '%00',
    '%E2%82',
  ),
  odd.map(encodeURIComponent),
  text(70).map(encodeURIComponent),
  fc.string({ unit: 'binary', maxLength: 30 }).map(encodeURIComponent),
  fc.integer({ min: 62, max: 400 }).map((length) => 'n'.repeat(length)),
)
const segment = fc.oneof(
  fc.constantFrom('servers', 'logs', 'user', 'docs', 'static', 'api', 'hub', '%ZZ', '..'),
  fc.stringMatching(/^[a-z0-9._~-]{1,12}$/),
  text(12).map(encodeURIComponent),
)
const path = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('servers', 'server_options', 'user', 'health', 'ready') },
  fc.constantFrom(
    '',
    'openapi.json',
    'docs',
    'docs/',
    'docs/static/index.html',
    'login',
    'oauth_callback',
    'logout',
  ),
  { weight: 3, arbitrary: serverName.map((name) => `servers/${name}`) },
  { weight: 2, arbitrary: serverName.map((name) => `logs/${name}`) },
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/')),
)
const queryValue = fc.oneof(
  fc.constantFrom(
    '',
    '0',
    '-1',
    '1.5',
    '1e99',
    '250',
    'true',
    'false',
    'maybe',
    'null',
    '%ZZ',
    'demo-group',
    'master',
  ),
  fc.constantFrom(`${PREFIX}/servers`, 'https://evil.example', '//evil.example', 'a'.repeat(300)),
  text(20).map(encodeURIComponent),
)
const queryKey = fc.oneof(
  fc.constantFrom(
    'namespace',
    'project',
    'branch',
    'commit_sha',
    'max_lines',
    'force',
    'next',
    'code',
    'state',
    'error',
  ),
  odd.map(encodeURIComponent),
  text(8).map(encodeURIComponent),
)
const query = fc
  .oneof(
    { weight: 2, arbitrary: fc.constant([] as [string, string][]) },
    fc.array(fc.tuple(queryKey, queryValue), { maxLength: 4 }),
  )
  .map((pairs) => (pairs.length ? `?${pairs.map(([key, value]) => `${key}=${value}`).join('&')}` : ''))

const authorization = fc.oneof(
  { weight: 6, arbitrary: fc.constant(`token ${users.developer.token}`) },
  fc.constantFrom(
    undefined,
    `Bearer ${users.developer.token}`,
    `token ${users.outsider.token}`,
    `token ${stack.serviceToken}`,
    'token not-a-token',
    'Basic ZGV2ZWxvcGVyOnBhc3N3b3Jk',
    'token',
    'bearer   ',
  ),
  text(40),
)
const contentType = fc.oneof(
  { weight: 4, arbitrary: fc.constant('application/json') },
  fc.constantFrom(
    undefined,
    'application/json; charset=utf-8',
    'APPLICATION/JSON',
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/merge-patch+json',
    'application/json; charset=utf-16',
    '',
  ),
  text(30),
)
const headers = fc
  .record(
    {
      authorization,
      cookie: fc.constantFrom(
        undefined,
        'notebooks-session=garbage',
        'notebooks-session=v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
        'notebooks-oauth-state=abc',
        '__proto__=1; constructor=2',
      ),
      accept: fc.constantFrom(
        undefined,
        'application/json',
        'text/html',
        '*/*',
        'text/html,application/xhtml+xml',
        'x',
      ),
      'content-type': contentType,
      'accept-version': fc.constantFrom(undefined, undefined, undefined, '1.0.0', 'x'),
    },
    { requiredKeys: [] },
  )
  .map(
    (record) =>
      Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as Record<
        string,
        string
      >,
  )

/** A JSON object written by hand, so keys like `__proto__` stay keys. */
const objectText = (entries: [string, unknown][]) =>
  `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',')}}`
const hex = fc.stringMatching(/^[0-9a-fA-F]{7,40}$/)
const optionKey = fc.oneof(
  fc.constantFrom(
    'cpu_request',
    'mem_request',
    'disk_request',
    'gpu_request',
    'lfs_auto_fetch',
    'defaultUrl',
  ),
  odd,
  text(10),
)
const launchFields = fc.record(
  {
    namespace: fc.oneof(fc.constantFrom('demo-group', 'science/lab', 'nope', '', 'a'.repeat(300)), anyJson),
    project: fc.oneof(fc.constantFrom('demo-project', 'public-notebook', '../etc', '.x'), text(20), anyJson),
    commit_sha: fc.oneof({ weight: 3, arbitrary: hex }, anyJson, text(12)),
    branch: fc.oneof(fc.constantFrom('master', 'main', 'feature', 'nope'), anyJson),
    notebook: fc.oneof(text(20), anyJson),
    image: fc.oneof(fc.constantFrom('not an image', 'UPPER/case', ':', 'a@sha256:zz'), anyJson),
    serverOptions: fc.oneof(
      {
        weight: 3,
        arbitrary: fc.array(fc.tuple(optionKey, anyJson), { maxLength: 3 }).map((entries) => ({ entries })),
      },
      anyJson.map((value) => ({ value })),
    ),
    extra: fc.array(fc.tuple(fc.oneof(odd, text(8)), anyJson), { maxLength: 2 }),
  },
  { requiredKeys: [] },
)
const launchBody = launchFields.map(({ serverOptions, extra, ...fields }) => {
  const entries: [string, unknown][] = Object.entries(fields)
  if (serverOptions !== undefined) {
    entries.push([
      'serverOptions',
      'entries' in serverOptions ? JSON.parse(objectText(serverOptions.entries)) : serverOptions.value,
    ])
  }
  return objectText([...entries, ...(extra ?? [])])
})
const body = fc.oneof(
  { weight: 6, arbitrary: launchBody },
  {
    weight: 2,
    arbitrary: fc.tuple(launchBody, fc.nat()).map(([json, cut]) => json.slice(0, cut % (json.length + 1))),
  },
  fc.json({ maxDepth: 2 }),
  fc.constantFrom(
    '',
    'null',
    '[]',
    '"a string"',
    '{"__proto__": {"admin": true}}',
    '{"constructor": {"prototype": {}}}',
    '{',
  ),
  text(40),
  fc.constant(HUGE),
)

const optionValue = fc.oneof(
  fc.constantFrom(0.5, 1, 1.0, 4, '1.0', '1G', '2G', '3G', '/lab', true, false, 0, -1),
  anyJson,
)
/** A launch that passes the schema, so it reaches the server options, GitLab and the hub. */
const wellFormedLaunch = fc
  .record(
    {
      namespace: fc.constantFrom('demo-group', 'science/lab', 'nope', 'demo-group/sub'),
      project: fc.oneof(
        fc.constantFrom('demo-project', 'public-notebook', 'missing'),
        fc.stringMatching(/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,20}$/),
      ),
      // Random: never one of the world's commits, so no server is really started.
      commit_sha: hex,
      branch: fc.constantFrom('master', 'main', 'feature', 'nope'),
      notebook: text(20),
      serverOptions: fc.array(fc.tuple(optionKey, optionValue), { maxLength: 3 }),
    },
    { requiredKeys: ['namespace', 'project', 'commit_sha'] },
  )
  .map(({ serverOptions, ...fields }) => {
    const entries: [string, unknown][] = Object.entries(fields)
    if (serverOptions) entries.push(['serverOptions', JSON.parse(objectText(serverOptions))])
    return objectText(entries)
  })
const launchPayload = fc.oneof({ weight: 4, arbitrary: wellFormedLaunch }, { weight: 4, arbitrary: body })

/** Mostly the service's own operations, some of anything. */
const endpoint = fc.oneof(
  { weight: 8, arbitrary: fc.record({ method: fc.constant('POST'), path: fc.constant('servers') }) },
  {
    weight: 4,
    arbitrary: fc.record({
      method: fc.constant('GET'),
      path: fc.constantFrom('servers', 'user', 'server_options', 'health', 'ready', 'openapi.json', ''),
    }),
  },
  fc.record({
    method: fc.constant('GET'),
    path: fc.constantFrom('login', 'logout', 'oauth_callback', 'docs', 'docs/'),
  }),
  {
    weight: 3,
    arbitrary: fc.record({ method: fc.constant('GET'), path: serverName.map((n) => `servers/${n}`) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ method: fc.constant('DELETE'), path: serverName.map((n) => `servers/${n}`) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ method: fc.constant('GET'), path: serverName.map((n) => `logs/${n}`) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      method: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS'),
      path,
    }),
  },
)

const request: fc.Arbitrary<FuzzRequest> = fc
  .record({
    endpoint,
    prefixed: fc.oneof({ weight: 20, arbitrary: fc.constant(true) }, fc.constant(false)),
    query,
    headers,
    launch: launchPayload,
    other: fc.option(body, { freq: 3 }),
  })
  .map(({ endpoint: { method, path }, prefixed, query, headers, launch, other }) => {
    const payload = method === 'POST' && path === 'servers' ? launch : other
    return {
      method,
      url: `${prefixed ? `${PREFIX}/` : '/'}${path}${query}`,
      headers,
      ...(payload !== null && method !== 'HEAD' && { payload }),
    }
  })

// ---- the checks ----------------------------------------------------------------------------

const UPSTREAM_NAMES = /JupyterHub|GitLab|Kubernetes|image registry|log files/
const UPSTREAM_CODES = new Set(['UPSTREAM_BAD_RESPONSE', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT'])
/** Codes answered before a request reaches an operation. */
const BEFORE_ANY_OPERATION = new Set(['BAD_URL'])

function show(req: FuzzRequest, status: number, text: string): string {
  const line = `${req.method} ${req.url.slice(0, 200)} ${JSON.stringify(req.headers)} ${req.payload?.slice(0, 200) ?? ''} -> ${status} ${text.slice(0, 300)}`
  // The report names which token was sent, not the token.
  return secrets.reduce((shown, secret, n) => shown.replaceAll(secret, `<secret ${n}>`), line)
}

/** Why this answer breaks the contract, or null. */
function violation(
  req: FuzzRequest,
  status: number,
  answerHeaders: Record<string, unknown>,
  text: string,
  operations: Operation[],
): string | null {
  const everything = text + JSON.stringify(answerHeaders)
  if (secrets.some((secret) => everything.includes(secret))) return 'a token came back'
  if (status < 400 || req.method === 'HEAD') return status >= 500 ? 'a 5xx' : null
  if (!String(answerHeaders['content-type']).startsWith('application/json'))
    return 'an error that is not JSON'
  let answer: { messages?: Record<string, unknown>; code?: string }
  try {
    answer = JSON.parse(text)
  } catch {
    return 'an error body that does not parse'
  }
  const { messages, code } = answer
  // Readiness answers 503 with its own shape when an upstream fails (the README's "Endpoints").
  const ready = answer as { ok?: unknown; checks?: unknown }
  if (status === 503 && req.url.startsWith(`${PREFIX}/ready`) && ready.ok === false && ready.checks)
    return null
  if (Object.keys(answer).sort().join() !== 'code,messages') return 'not the error body'
  if (typeof messages?.error !== 'string' || !messages.error) return 'no message'
  for (const [part, fields] of Object.entries(messages)) {
    if (part === 'error') continue
    if (!['json', 'query', 'params'].includes(part)) return `an unknown part ${part}`
    for (const reasons of Object.values(fields as Record<string, unknown>)) {
      if (!Array.isArray(reasons) || !reasons.every((reason) => typeof reason === 'string'))
        return 'bad field errors'
    }
  }
  if (typeof code !== 'string' || !Object.hasOwn(errorCodes, code)) return `an unknown code ${code}`
  if (errorCodes[code as ErrorCode].status !== status) return `${code} with status ${status}`
  if (status >= 500 && !(UPSTREAM_CODES.has(code) && UPSTREAM_NAMES.test(messages.error))) {
    return 'a 5xx that is not an upstream naming itself'
  }
  if (BEFORE_ANY_OPERATION.has(code)) return null
  // The path as it arrives, parsed as the injection parses it (`.` and `..` resolved).
  const base = 'http://localhost'
  const path = new URL(req.url.startsWith('//') ? base + req.url : req.url, base).pathname
  const operation = operations.find((op) => op.method === req.method && op.pattern.test(path))
  if (!operation) return code === 'ROUTE_NOT_FOUND' ? null : `${code} for no operation`
  if (!operation.codes.get(status)?.has(code))
    return `${code} (${status}) is not documented for this operation`
  return null
}

t.test(`${BATCHES * BATCH_SIZE} generated requests: no 500, the error body, documented codes`, async (t) => {
  const operations = documentedOperations()
  const statuses = new Map<number, number>()
  const codes = new Map<string, number>()
  const started = Date.now()
  const property = fc.asyncProperty(
    fc.array(request, { minLength: BATCH_SIZE, maxLength: BATCH_SIZE }),
    async (batch) => {
      const answers = await Promise.all(
        batch.map((req) =>
          stack.app
            .inject(req.payload === HUGE ? { ...req, payload: 'x'.repeat(1_100_000) } : req)
            .catch((err: Error) => {
              throw new Error(`the request could not be made (${err.message}): ${show(req, 0, '')}`)
            }),
        ),
      )
      answers.forEach((answer, i) => {
        const req = batch[i] as FuzzRequest
        statuses.set(answer.statusCode, (statuses.get(answer.statusCode) ?? 0) + 1)
        const why = violation(req, answer.statusCode, answer.headers, answer.body, operations)
        if (why) throw new Error(`${why}: ${show(req, answer.statusCode, answer.body)}`)
        // An error's body parses: violation() checked it.
        const code = answer.statusCode >= 400 && req.method !== 'HEAD' ? answer.json().code : undefined
        if (code) codes.set(code, (codes.get(code) ?? 0) + 1)
      })
    },
  )
  // No shrinking: the failing request is in the message, and the seed replays the run.
  await fc.assert(property, {
    seed: SEED,
    numRuns: BATCHES,
    endOnFailure: true,
    reporter: (run) => {
      if (!run.failed) return
      const why = run.errorInstance instanceof Error ? run.errorInstance.message : String(run.errorInstance)
      throw new Error(`seed ${run.seed}, batch ${run.numRuns}: ${why}`)
    },
  })
  const seconds = (Date.now() - started) / 1000
  t.comment(`${BATCHES * BATCH_SIZE} requests in ${seconds.toFixed(1)} s (seed ${SEED})`)
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`)
  t.comment(`codes: ${JSON.stringify(Object.fromEntries([...codes].sort(([, a], [, b]) => b - a)))}`)
  t.equal(
    [...statuses.values()].reduce((a, b) => a + b, 0),
    BATCHES * BATCH_SIZE,
    'every request answered',
  )
  t.notOk(statuses.has(500), 'no 500')
  // The requests reach deep: validation, the hub and GitLab, not only the login check.
  for (const code of [
    'NOT_AUTHENTICATED',
    'USERS_ONLY',
    'VALIDATION_ERROR',
    'INVALID_SERVER_OPTIONS',
    'INVALID_JSON',
    'UNSUPPORTED_MEDIA_TYPE',
    'BODY_TOO_LARGE',
    'PROJECT_NOT_FOUND',
    'SERVER_NOT_FOUND',
    'ROUTE_NOT_FOUND',
    'BAD_URL',
  ]) {
    t.ok(codes.has(code), `reached ${code}`)
  }
  t.ok(statuses.has(200) && statuses.has(302), 'and successful answers')
})

// ---- unexpected errors ---------------------------------------------------------------------

interface LogLine {
  level: number
  msg: string
  reqId?: string
  status?: number
  ms?: number
  upstream?: string
  err?: { message?: string }
  [key: string]: unknown
}

function logCapture() {
  const lines: string[] = []
  return {
    stream: { write: (line: string) => void lines.push(line) },
    lines,
    parsed: () => lines.map((line) => JSON.parse(line) as LogLine),
  }
}

t.test('unexpected errors answer the error body, without internal text', async (t) => {
  const log = logCapture()
  const app = await build(
    t,
    {
      JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
      JUPYTERHUB_API_TOKEN: 'contract-test-token',
      GITLAB_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'info',
    },
    { logStream: log.stream },
  )
  const broken = (detail: string) => Object.assign(new Error(`internal detail: ${detail}`), { password: 'x' })
  app.get(`${PREFIX}/test/handler`, async () => {
    throw broken('a handler threw')
  })
  app.get(`${PREFIX}/test/not-an-error`, async () => {
    throw { message: 'internal detail: not an Error' }
  })
  app.get(
    `${PREFIX}/test/hook`,
    {
      onRequest: async () => {
        throw broken('an onRequest hook threw')
      },
    },
    async () => 'unreachable',
  )
  app.get(
    `${PREFIX}/test/serializer`,
    {
      schema: {
        response: { 200: { type: 'object', required: ['id'], properties: { id: { type: 'string' } } } },
      },
    },
    // The answer lacks what its schema requires: serializing it throws.
    async () => ({ other: 'internal detail: serializer' }),
  )
  app.get(`${PREFIX}/test/odd-validation`, async () => {
    // An error the error handler cannot make sense of.
    throw Object.assign(broken('odd validation'), { validation: 'not a list' })
  })
  app.get(`${PREFIX}/test/client-status`, async () => {
    throw Object.assign(broken('a 4xx from a library'), { statusCode: 418 })
  })

  for (const route of ['handler', 'not-an-error', 'hook', 'serializer', 'odd-validation']) {
    const res = await app.inject({ url: `${PREFIX}/test/${route}` })
    t.equal(res.statusCode, 500, route)
    t.match(res.headers['content-type'], /^application\/json/)
    t.same(
      res.json(),
      {
        messages: { error: 'Something went wrong on our side; the error has been logged.' },
        code: 'INTERNAL_ERROR',
      },
      `${route}: the error body`,
    )
    t.notMatch(res.body, /internal detail/, `${route}: no internal text`)
  }
  const client = await app.inject({ url: `${PREFIX}/test/client-status` })
  t.equal(client.statusCode, 400)
  t.same(client.json(), { messages: { error: 'The request is malformed.' }, code: 'BAD_REQUEST' })

  const requestLines = log.parsed().filter((line) => line.msg === 'request')
  // At `info`, the 400 is not written.
  t.same(
    requestLines.map((line) => [line.level, line.status]),
    Array(5).fill([50, 500]),
    'one line for each 500, at error',
  )
  t.same(
    requestLines.map((line) => line.err?.message),
    [
      'internal detail: a handler threw',
      'internal detail: not an Error',
      'internal detail: an onRequest hook threw',
      '"id" is required!',
      'internal detail: odd validation',
    ],
    'saying what happened',
  )
})

t.test('malformed HTTP is answered with the error body', async (t) => {
  const app = await build(t, {
    JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
    JUPYTERHUB_API_TOKEN: 'contract-test-token',
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(bytes))
      let answer = ''
      socket.on('data', (chunk) => {
        answer += chunk.toString('utf8')
      })
      socket.on('close', () => resolve(answer))
      socket.on('error', reject)
    })
  for (const [what, bytes, status, code] of [
    ['not HTTP', 'HELLO THERE\r\n\r\n', 400, 'BAD_REQUEST'],
    ['a bad header', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'BAD_REQUEST'],
    [
      'headers too large',
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
      'HEADERS_TOO_LARGE',
    ],
  ] as const) {
    const answer = await raw(bytes)
    t.match(answer, new RegExp(`^HTTP/1.1 ${status} `), `${what}: ${status}`)
    const [, text] = answer.split('\r\n\r\n')
    t.same(
      JSON.parse(text ?? ''),
      { messages: { error: errorMessage(code) }, code },
      `${what}: the error body`,
    )
  }
})

function errorMessage(code: 'BAD_REQUEST' | 'HEADERS_TOO_LARGE'): string {
  return code === 'BAD_REQUEST' ? 'The request is not valid HTTP.' : 'The request headers are too large.'
}

// ---- the request log -----------------------------------------------------------------------

t.test('the request log: one line per request, errors and slow ones above debug, no secrets', async (t) => {
  const hub = await startCountingProxy(new URL(stack.hub.apiUrl).origin)
  t.teardown(() => hub.close())
  const log = logCapture()
  const app = await build(
    t,
    {
      JUPYTERHUB_API_URL: `${hub.url}/hub/api`,
      JUPYTERHUB_API_TOKEN: stack.serviceToken,
      GITLAB_URL: stack.gitlab.url,
      LOG_LEVEL: 'debug',
    },
    { logStream: log.stream },
  )
  const developer = { authorization: `token ${users.developer.token}` }
  const cookie = 'notebooks-session=v1.c2VjcmV0LWNvb2tpZS12YWx1ZQ'

  const call = async (
    url: string,
    options: { method?: 'GET' | 'POST'; payload?: string; token?: string } = {},
  ) => {
    const before = log.lines.length
    const auth = options.token ? { authorization: `token ${options.token}` } : developer
    const res = await app.inject({
      method: options.method ?? 'GET',
      url: `${PREFIX}/${url}`,
      headers: { ...auth, cookie, 'content-type': 'application/json' },
      ...(options.payload !== undefined && { payload: options.payload }),
    })
    const lines = log.parsed().slice(before)
    return { res, lines }
  }

  const plain: [string, number, { method?: 'GET' | 'POST'; payload?: string }?][] = [
    ['servers?namespace=x', 200],
    ['servers/nope-12345678', 404],
    ['servers', 400, { method: 'POST', payload: '{' }],
    ['no/such/route', 404],
  ]
  for (const [url, status, options] of plain) {
    const { res, lines } = await call(url, options)
    t.equal(res.statusCode, status, url)
    t.equal(lines.length, 1, `${url}: one line`)
    t.match(
      lines[0],
      { level: 20, msg: 'request', status, url: `${PREFIX}/${url.split('?')[0]}` },
      `${url}: at debug`,
    )
  }

  // Reads of servers come from the copy of the hub's state; a token not seen before is
  // checked with the hub. Twice: a read is retried once.
  const whoami = /\/hub\/api\/user(\?|$)/
  hub.failNext(whoami, 502, 2)
  const failed = await call('servers', { token: users.maintainer.token })
  t.equal(failed.res.statusCode, 502)
  t.equal(failed.lines.length, 1, 'an upstream failure: one line')
  t.match(
    failed.lines[0],
    { level: 40, msg: 'request', status: 502, upstream: 'JupyterHub' },
    'at warn, naming it',
  )

  hub.delayNext(whoami, 1200)
  const slow = await call('servers', { token: users.guest.token })
  t.equal(slow.res.statusCode, 200)
  t.equal(slow.lines.length, 1, 'a slow request: one line')
  t.match(slow.lines[0], { level: 30, msg: 'request', status: 200 }, 'at info')
  t.ok((slow.lines[0]?.ms ?? 0) >= 1000, 'with its duration')

  app.log.level = 'info'
  const quiet = await call('servers')
  t.equal(quiet.res.statusCode, 200)
  t.equal(quiet.lines.length, 0, 'at info, a quick success writes nothing')

  const all = log.lines.join('\n')
  for (const secret of [
    users.developer.token,
    users.maintainer.token,
    users.guest.token,
    stack.serviceToken,
    'c2VjcmV0LWNvb2tpZS12YWx1ZQ',
  ]) {
    t.notOk(all.includes(secret), 'no token or cookie in the log')
  }
  t.notMatch(all, /incoming request|request completed/, "Fastify's own request lines are gone")
})
