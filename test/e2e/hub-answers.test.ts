/**
 * The hub's other answers, as it really gives them: 202 for a slow start, 429 when its
 * concurrent-spawn limit is reached, 400 "pending" on a stop during a start; and upstreams
 * that are down or slow.
 */

import t from 'tap'
import { eventually, startStack } from '../../dev/stack.js'
import type { ServerObject } from '../../schemas/servers.js'
import { build } from '../helper.js'

// Every start answers 202 at once; one start at a time across the hub.
const stack = await startStack({ hubEnv: { JHUB_SLOW_SPAWN_TIMEOUT: '0', JHUB_CONCURRENT_SPAWN_LIMIT: '1' } })
t.teardown(() => stack.stop())
const { world, users } = stack
const demo = { namespace: 'demo-group', project: 'demo-project' }

t.test('a slow start is 202, busy stops are 409, and the spawn limit is 429 with Retry-After', async (t) => {
  const developer = stack.as(users.developer)
  const launch = await developer<ServerObject>('POST', 'servers', {
    ...demo,
    commit_sha: world.commits.demo.masterFirst,
  })
  t.equal(launch.status, 202, 'the hub accepted the start')
  t.equal(launch.body.status.state, 'starting')
  t.equal(launch.body.status.ready, false)

  const busy = await stack.as(users.maintainer)('POST', 'servers', {
    ...demo,
    commit_sha: world.commits.demo.masterSecond,
  })
  t.equal(busy.status, 429, 'another start while the hub is at its limit')
  t.equal(busy.body.code, 'TOO_MANY_SPAWNS')
  t.match(busy.headers.get('retry-after'), /^\d+$/, 'with Retry-After')

  const stop = await developer('DELETE', `servers/${launch.body.name}`)
  t.equal(stop.status, 409, 'stopping a server that is still starting')
  t.equal(stop.body.code, 'SERVER_BUSY')
  t.match(stop.body.messages.error, /retry/)

  const running = await eventually(async () => {
    const { body } = await developer<ServerObject>('GET', `servers/${launch.body.name}`)
    return body.status?.state === 'running' ? body : undefined
  })
  t.equal(running.status.ready, true)
  t.ok(
    [202, 204].includes((await developer('DELETE', `servers/${launch.body.name}`)).status),
    'then it stops',
  )
})

t.test('two replicas launching the same server at once give one server', async (t) => {
  const replica = await build(t, {
    JUPYTERHUB_API_URL: stack.hub.apiUrl,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    GITLAB_URL: stack.gitlab.url,
  })
  const body = { ...demo, commit_sha: world.commits.demo.feature, branch: 'feature' }
  const [viaStack, viaReplica] = await Promise.all([
    stack.as(users.developer)<ServerObject>('POST', 'servers', body),
    replica.inject({
      method: 'POST',
      url: '/services/notebooks/servers',
      headers: { authorization: `token ${users.developer.token}` },
      payload: body,
    }),
  ])
  t.equal(viaStack.status, 202)
  t.ok([200, 202].includes(viaReplica.statusCode), `the other replica: ${viaReplica.statusCode}`)
  t.equal(viaReplica.json().name, viaStack.body.name, 'the same server')
  const list = await stack.as(users.developer)<{ servers: Record<string, ServerObject> }>('GET', 'servers')
  t.same(Object.keys(list.body.servers), [viaStack.body.name])
  await eventually(async () => {
    const { body: server } = await stack.as(users.developer)<ServerObject>(
      'GET',
      `servers/${viaStack.body.name}`,
    )
    return server.status?.state === 'running' ? true : undefined
  })
  const again = await replica.inject({
    method: 'POST',
    url: '/services/notebooks/servers',
    headers: { authorization: `token ${users.developer.token}` },
    payload: body,
  })
  t.equal(again.statusCode, 200, 'once it runs, either replica answers 200')
  t.ok(
    [202, 204].includes((await stack.as(users.developer)('DELETE', `servers/${viaStack.body.name}`)).status),
  )
})

t.test('readiness names the upstreams', async (t) => {
  const ready = await stack.as(null)('GET', 'ready')
  t.equal(ready.status, 200)
  t.same(ready.body, { ok: true, checks: { jupyterhub: true, gitlab: true } })
  t.same((await stack.as(null)('GET', 'health')).body, { ok: true })
})

t.test('upstreams that cannot be reached or do not answer in time', async (t) => {
  const env = {
    JUPYTERHUB_API_URL: stack.hub.apiUrl,
    JUPYTERHUB_API_TOKEN: stack.serviceToken,
    GITLAB_URL: stack.gitlab.url,
    LOG_LEVEL: 'silent',
  }
  const auth = { authorization: `token ${users.developer.token}` }

  const hubDown = await build(t, { ...env, JUPYTERHUB_API_URL: 'http://127.0.0.1:1/hub/api' })
  const unreachable = await hubDown.inject({ url: '/services/notebooks/servers', headers: auth })
  t.equal(unreachable.statusCode, 503, 'a hub that cannot be reached to check a token: 503, not 401')
  t.same(unreachable.json(), {
    messages: { error: 'JupyterHub cannot be reached.' },
    code: 'UPSTREAM_UNAVAILABLE',
  })
  const notReady = await hubDown.inject({ url: '/services/notebooks/ready' })
  t.equal(notReady.statusCode, 503)
  t.same(notReady.json(), { ok: false, checks: { jupyterhub: false, gitlab: true } })

  const slow = await build(t, { ...env, NOTEBOOKS_UPSTREAM_TIMEOUT: '1' })
  stack.gitlab.faults.push({ server: 'gitlab', path: /^\/api\/v4\/projects\//, delayMs: 2500 })
  t.teardown(() => {
    stack.gitlab.faults.length = 0
  })
  const timedOut = await slow.inject({
    method: 'POST',
    url: '/services/notebooks/servers',
    headers: auth,
    payload: { ...demo, commit_sha: world.commits.demo.masterFirst },
  })
  t.equal(timedOut.statusCode, 504)
  t.same(timedOut.json(), { messages: { error: 'GitLab did not answer in time.' }, code: 'UPSTREAM_TIMEOUT' })
})

t.test('unknown routes and servers', async (t) => {
  const developer = stack.as(users.developer)
  const route = await developer('GET', 'no/such/route')
  t.equal(route.status, 404)
  t.equal(route.body.code, 'ROUTE_NOT_FOUND')
  const server = await developer('GET', 'servers/nope-12345678')
  t.equal(server.status, 404)
  t.same(server.body, {
    messages: { error: 'You have no server named nope-12345678.' },
    code: 'SERVER_NOT_FOUND',
  })
  const bad = await stack.as({ name: 'x', token: 'not-a-token' })('GET', 'servers')
  t.equal(bad.status, 401)
  t.equal(bad.body.code, 'NOT_AUTHENTICATED')
  const bearer = await stack.as(null)('GET', 'servers', undefined, {
    authorization: `Bearer ${users.developer.token}`,
  })
  t.equal(bearer.status, 200, 'Bearer works as well as token')
  const filter = await developer('GET', 'servers?colour=blue')
  t.equal(filter.status, 422, 'an unknown filter is refused')
  t.ok(filter.body.messages.query.colour)
  const anonymous = await stack.as(null)('GET', 'server_options')
  t.equal(anonymous.status, 401, 'the server options need a login too')
  t.equal(anonymous.body.code, 'NOT_AUTHENTICATED')
  const options = await developer('GET', 'server_options')
  t.equal(options.status, 200)
  t.equal(options.body.cpu_request.displayName, 'Number of CPUs')
})

t.test('a name longer than any server can have is a 404, not a 414', async (t) => {
  const developer = stack.as(users.developer)
  for (const length of [64, 101, 300, 5000]) {
    const name = 'n'.repeat(length)
    for (const [method, route] of [
      ['GET', `servers/${name}`],
      ['DELETE', `servers/${name}`],
      ['GET', `logs/${name}`],
    ] as const) {
      const response = await developer(method, route)
      t.equal(response.status, 404, `${method} ${route.split('/')[0]}/<${length} characters>`)
      t.equal(response.body.code, 'SERVER_NOT_FOUND')
    }
  }
})

t.test('keys named like a plain object’s own properties are refused, never a 500', async (t) => {
  const developer = stack.as(users.developer)
  const launch = { ...demo, commit_sha: world.commits.demo.masterFirst }
  for (const key of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__']) {
    const field = await developer('POST', 'servers', `{"${key}": 1}`)
    t.equal(field.status, 422, `a field named ${key}`)
    t.equal(field.body.code, 'VALIDATION_ERROR')
    t.same(field.body.messages.json[key], ['is not a known field'])

    const option = await developer('POST', 'servers', { ...launch, serverOptions: { [key]: 'x' } })
    t.equal(option.status, 422, `a server option named ${key}`)
    t.equal(option.body.code, 'INVALID_SERVER_OPTIONS')
    t.match(option.body.messages.json[`serverOptions.${key}`], [/is not a server option/])

    const query = await developer('GET', `servers?${key}=1`)
    t.equal(query.status, 422, `a filter named ${key}`)
    t.same(query.body.messages.query[key], ['is not a known field'])
  }
  const proto = await developer('POST', 'servers', '{"__proto__": {"admin": true}}')
  t.equal(proto.status, 400)
  t.equal(proto.body.code, 'INVALID_JSON')
  t.match(proto.body.messages.error, /__proto__/)
  const protoQuery = await developer('GET', 'servers?__proto__=1')
  t.equal(protoQuery.status, 422, 'a filter named __proto__')
  t.ok(Object.hasOwn(protoQuery.body.messages.query, '__proto__'))
})

t.test('malformed input is always a 4xx with the error body, never a 500', async (t) => {
  const developer = stack.as(users.developer)
  const requests: [string, string, unknown?, Record<string, string>?][] = [
    ['GET', 'servers/%ZZ'],
    ['GET', `servers/${'x'.repeat(300)}`],
    ['GET', 'servers?namespace=a&namespace=b'],
    ['GET', 'logs/x?max_lines=1e99'],
    ['GET', 'logs/x?max_lines=1.5'],
    ['GET', 'logs/x?max_lines='],
    ['DELETE', 'servers/x?force=maybe'],
    ['POST', 'servers', '{"namespace": "a", "namespace": 1}'],
    ['POST', 'servers', 'null'],
    ['POST', 'servers', '"a string"'],
    ['POST', 'servers', '{"__proto__": {"admin": true}}'],
    ['POST', 'servers', { namespace: 'a', project: 'b', commit_sha: 'abcdef1', serverOptions: [] }],
    [
      'POST',
      'servers',
      { namespace: 'a', project: 'b', commit_sha: 'abcdef1', serverOptions: { cpu_request: null } },
    ],
    ['POST', 'servers', { namespace: '', project: 'b', commit_sha: 'abcdef1' }],
    ['POST', 'servers', { namespace: 'a', project: '../etc', commit_sha: 'abcdef1' }],
    ['POST', 'servers', { namespace: 'a', project: 'b', commit_sha: 'a'.repeat(41) }],
    ['POST', 'servers', 'x'.repeat(2_000_000)],
    ['POST', 'servers', '{}', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['POST', 'servers', undefined, { 'content-type': 'application/json' }],
    ['PUT', 'servers'],
  ]
  for (const [method, route, body, headers] of requests) {
    const response = await developer(method, route, body, headers)
    const what = `${method} ${route.slice(0, 40)} ${typeof body === 'string' ? body.slice(0, 30) : JSON.stringify(body ?? '')}`
    t.ok(response.status >= 400 && response.status < 500, `${what}: ${response.status}`)
    t.type(response.body?.messages?.error, 'string', `${what}: the error body`)
    t.match(response.body?.code, /^[A-Z_]+$/, `${what}: a code`)
  }
})
