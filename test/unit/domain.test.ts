import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, loadConfig } from '../../lib/core/config.js'
import { type ApiError, UpstreamError } from '../../lib/core/errors.js'
import { autosavesOf, autosaveToRestore, parseAutosaveName } from '../../lib/gitlab/autosaves.js'
import { parseImage } from '../../lib/gitlab/image-registry.js'
import type { HubServer, HubUser, LastStart } from '../../lib/hub/client.js'
import { HubReflector } from '../../lib/hub/state/reflector.js'
import { parseBytes, resolveServerOptions } from '../../lib/servers/options.js'
import { matchesFilter, serverName, toServerObject } from '../../lib/servers/server-object.js'
import { parseAutosavePath } from '../../routes/autosave.js'
import { BUNDLED_DEFAULTS } from '../support/server-options.js'

const required = { JUPYTERHUB_API_URL: 'http://hub:8081/hub/api', JUPYTERHUB_API_TOKEN: 'secret-token-value' }

t.test('configuration', async (t) => {
  const config = loadConfig(required)
  t.equal(config.hubApiUrl, 'http://hub:8081/hub/api')
  t.equal(config.servicePrefix, '/services/notebooks/')
  t.equal(config.hubBaseUrl, '/')
  t.equal(config.gitlabUrl, 'https://gitlab.com')
  t.equal(config.defaultImage, 'renku/singleuser:latest')
  t.equal(config.minAccessLevel, 30)
  t.equal(config.port, 8000)
  t.equal(config.metricsPort, 9090)
  t.equal(loadConfig({ ...required, METRICS_PORT: '0' }).metricsPort, 0, '0 turns the metrics listener off')
  t.equal(config.sessionVolumes, false, 'session volumes are off by default')
  t.equal(config.sessionVolumeRetentionMs, 168 * 3_600_000, 'kept a week by default')
  t.equal(
    loadConfig({ ...required, NOTEBOOKS_SESSION_VOLUMES: 'TRUE', KUBECONFIG: '/k' }).sessionVolumes,
    true,
  )
  t.equal(
    loadConfig({ ...required, NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS: '0.5' }).sessionVolumeRetentionMs,
    1_800_000,
    'fractions of an hour',
  )
  t.equal(config.host, '0.0.0.0')
  t.equal(config.oauthCallbackUrl, '/services/notebooks/oauth_callback')
  t.same(Object.keys(config.serverOptions), [
    'defaultUrl',
    'cpu_request',
    'mem_request',
    'disk_request',
    'gpu_request',
    'lfs_auto_fetch',
  ])
  t.equal(loadConfig({ ...required, JUPYTERHUB_SERVICE_PREFIX: '/x' }).servicePrefix, '/x/')

  const bad: [Record<string, string>, RegExp][] = [
    [{ JUPYTERHUB_API_TOKEN: 't' }, /^JUPYTERHUB_API_URL is required/],
    [{ JUPYTERHUB_API_URL: 'http://hub/hub/api' }, /^JUPYTERHUB_API_TOKEN is required/],
    [{ ...required, JUPYTERHUB_API_URL: 'not a url' }, /^JUPYTERHUB_API_URL is not a valid URL/],
    [{ ...required, GITLAB_URL: 'ftp://gitlab' }, /^GITLAB_URL must be an http/],
    [{ ...required, PORT: 'eighty' }, /^PORT must be a whole number/],
    [{ ...required, PORT: '70000' }, /^PORT must be a whole number/],
    [{ ...required, METRICS_PORT: 'prometheus' }, /^METRICS_PORT must be a whole number from 0 to 65535/],
    [{ ...required, PORT: '9000', METRICS_PORT: '9000' }, /^METRICS_PORT must differ from PORT/],
    [{ ...required, NOTEBOOKS_MIN_ACCESS_LEVEL: '-1' }, /^NOTEBOOKS_MIN_ACCESS_LEVEL/],
    [
      { ...required, JUPYTERHUB_ORIGIN: 'https://hub.example.com/path' },
      /^JUPYTERHUB_ORIGIN must be an origin/,
    ],
    [{ ...required, LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of/],
    [
      { ...required, NOTEBOOKS_SESSION_VOLUMES: 'sometimes' },
      /^NOTEBOOKS_SESSION_VOLUMES must be true or false/,
    ],
    [
      { ...required, NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS: '0' },
      /^NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS must be a number of hours above 0/,
    ],
    [
      { ...required, NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS: 'a week' },
      /^NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS must be a number of hours/,
    ],
    [
      { ...required, NOTEBOOKS_SERVER_OPTIONS_PATH: '/nonexistent/options.json' },
      /^NOTEBOOKS_SERVER_OPTIONS_PATH names a file that cannot be read/,
    ],
  ]
  const dir = mkdtempSync(join(tmpdir(), 'options-'))
  writeFileSync(join(dir, 'broken.json'), '{"cpu_request": ')
  writeFileSync(
    join(dir, 'wrong.json'),
    '{"cpu_request": {"displayName": "CPUs", "type": "slider", "default": 1}}',
  )
  bad.push([{ ...required, NOTEBOOKS_SERVER_OPTIONS_PATH: join(dir, 'broken.json') }, /not valid JSON/])
  bad.push([
    { ...required, NOTEBOOKS_SERVER_OPTIONS_PATH: join(dir, 'wrong.json') },
    /not valid server options: \/cpu_request/,
  ])
  for (const [env, message] of bad) {
    const error = t.throws(() => loadConfig(env)) as unknown as Error
    t.ok(error instanceof ConfigError, `${Object.keys(env).at(-1)} is a ConfigError`)
    t.match(error.message, message)
    t.notMatch(error.message, /secret-token-value/, 'never prints the token')
    t.notMatch(error.message, /\n/, 'one line')
  }
})

t.test(
  'server name: project[:54]-md5(namespace+project+branch+sha)[:8], at most 63 characters',
  async (t) => {
    const sha = 'a'.repeat(40)
    const digest = createHash('md5').update(`groupmy-projectmaster${sha}`).digest('hex').slice(0, 8)
    t.equal(serverName('group', 'my-project', 'master', sha), `my-project-${digest}`)
    const long = serverName('g', 'p'.repeat(100), 'main', sha)
    t.equal(long.length, 63)
    t.match(long, /^p{54}-[0-9a-f]{8}$/)
    t.not(serverName('g', 'p', 'main', sha), serverName('g', 'p', 'dev', sha), 'the branch is part of it')
  },
)

t.test('server options: defaults, types without coercion, ranges', async (t) => {
  const options = loadConfig(required).serverOptions
  t.same(resolveServerOptions(options, {}), BUNDLED_DEFAULTS)
  t.equal(resolveServerOptions(options, { cpu_request: 1 }).cpu_request, 1)
  t.equal(resolveServerOptions(options, { lfs_auto_fetch: true }).lfs_auto_fetch, true)

  const refused: [Record<string, unknown>, string][] = [
    [{ cpu_request: '1.0' }, 'serverOptions.cpu_request'],
    [{ cpu_request: 4 }, 'serverOptions.cpu_request'],
    [{ mem_request: '3G' }, 'serverOptions.mem_request'],
    [{ lfs_auto_fetch: 'yes' }, 'serverOptions.lfs_auto_fetch'],
    [{ turbo: true }, 'serverOptions.turbo'],
    // Names every plain object answers to are still not options.
    [{ toString: 'x' }, 'serverOptions.toString'],
    [{ constructor: 1 }, 'serverOptions.constructor'],
    [{ hasOwnProperty: true }, 'serverOptions.hasOwnProperty'],
    [JSON.parse('{"__proto__": "x"}'), 'serverOptions.__proto__'],
  ]
  for (const [posted, field] of refused) {
    const error = t.throws(() => resolveServerOptions(options, posted)) as unknown as ApiError
    t.equal(error.statusCode, 422)
    t.equal(error.toBody().code, 'INVALID_SERVER_OPTIONS')
    t.ok(Object.hasOwn(error.toBody().messages.json ?? {}, field), `${field} is named`)
  }

  const ranged = {
    mem_request: {
      displayName: 'Memory',
      type: 'enum' as const,
      default: '1G',
      options: ['1G'],
      allow_any_value: true,
      value_range: { type: 'bytes' as const, min: '1G', max: '4Gi' },
    },
    threads: { displayName: 'Threads', type: 'int' as const, default: 1 },
    share: {
      displayName: 'Share',
      type: 'float' as const,
      default: 0.5,
      value_range: { type: 'number' as const, min: 0, max: 1 },
    },
  }
  t.equal(resolveServerOptions(ranged, { mem_request: '4G' }).mem_request, '4G')
  t.equal(resolveServerOptions(ranged, { mem_request: '4Gi' }).mem_request, '4Gi')
  t.throws(() => resolveServerOptions(ranged, { mem_request: '5G' }), 'above 4Gi')
  t.throws(() => resolveServerOptions(ranged, { mem_request: '512M' }), 'below 1G')
  t.equal(resolveServerOptions(ranged, { threads: 8 }).threads, 8)
  t.throws(() => resolveServerOptions(ranged, { threads: 1.5 }), 'int must be whole')
  t.throws(() => resolveServerOptions(ranged, { threads: -1 }), 'no negative numbers')
  t.throws(() => resolveServerOptions(ranged, { share: 2 }), 'outside value_range')
  t.equal(parseBytes('1G'), 1e9)
  t.equal(parseBytes('1Gi'), 2 ** 30)
  t.equal(parseBytes('lots'), null)
})

t.test('image names are parsed as Docker does', async (t) => {
  t.same(parseImage('registry.example.com/ns/p:abc1234'), {
    host: 'registry.example.com',
    repository: 'ns/p',
    reference: 'abc1234',
  })
  t.same(parseImage('127.0.0.1:5000/a/b'), { host: '127.0.0.1:5000', repository: 'a/b', reference: 'latest' })
  t.same(parseImage('python:3.11'), { host: 'docker.io', repository: 'library/python', reference: '3.11' })
  t.same(parseImage('renku/singleuser:latest'), {
    host: 'docker.io',
    repository: 'renku/singleuser',
    reference: 'latest',
  })
  t.equal(parseImage('UPPER/case'), null)
  t.equal(parseImage('a b'), null)
  t.equal(parseImage('ns/p@sha256:short'), null)
})

t.test('server object from the hub server', async (t) => {
  const sha = 'b'.repeat(40)
  const hubServer = {
    name: 'demo-12345678',
    ready: true,
    pending: null,
    url: '/user/alice/demo-12345678/',
    started: '2026-01-01T10:00:00.000000Z',
    last_activity: null,
    state: { pid: 42 },
    user_options: {
      namespace: 'ns',
      project: 'demo',
      branch: 'master',
      commit_sha: sha,
      project_id: 42,
      image: 'renku/singleuser:latest',
      default_image_used: true,
      repository: 'https://gitlab.example.com/ns/demo.git',
      server_options: { cpu_request: 0.5, mem_request: '1G', disk_request: '1G', gpu_request: 0 },
    },
  }
  const server = toServerObject({ origin: 'https://hub.example.com', baseUrl: '/' }, 'alice', hubServer)
  t.equal(server.url, 'https://hub.example.com/user/alice/demo-12345678/')
  t.same(server.annotations, {
    'renku.io/username': 'alice',
    'renku.io/namespace': 'ns',
    'renku.io/projectName': 'demo',
    'renku.io/branch': 'master',
    'renku.io/commit-sha': sha,
    'renku.io/gitlabProjectId': '42',
    'renku.io/repository': 'https://gitlab.example.com/ns/demo.git',
    'renku.io/default_image_used': 'True',
  })
  t.same(server.resources, { cpu: '0.5', memory: '1G', storage: '1G', gpu: '0' })
  t.same(server.status, { state: 'running', ready: true })
  t.equal(
    toServerObject({ origin: '', baseUrl: '/' }, 'alice', { ...hubServer, ready: false, pending: 'spawn' })
      .status.state,
    'starting',
  )
  t.equal(
    toServerObject({ origin: '', baseUrl: '/' }, 'alice', { ...hubServer, ready: false, pending: 'stop' })
      .status.state,
    'stopping',
  )
  // A stopped server: the words say how its last start ended, once the copy knows.
  const stoppedServer = { ...hubServer, ready: false, started: null, stopped: true }
  const statusWhen = (last_start?: LastStart) =>
    toServerObject({ origin: '', baseUrl: '/' }, 'alice', {
      ...stoppedServer,
      ...(last_start && { last_start }),
    }).status
  t.same(statusWhen({ outcome: 'failed', message: 'Spawn failed: the notebook command exited with 3' }), {
    state: 'failed',
    ready: false,
    message:
      'The server failed to start: the notebook command exited with 3. Launch it again to retry, or stop it to remove it.',
    reason: 'SpawnFailed',
  })
  t.same(statusWhen({ outcome: 'started' }), {
    state: 'failed',
    ready: false,
    message:
      'The server was stopped (for example after being idle); launch it again to go on, or stop it to remove it.',
    reason: 'Stopped',
  })
  t.same(
    statusWhen(),
    {
      state: 'failed',
      ready: false,
      message: 'The server is not running; launch it again to go on, or stop it to remove it.',
    },
    'not known yet: neither word',
  )
  const pod = {
    name: 'jupyter-alice',
    phase: 'Running',
    ready: false,
    terminating: false,
    failed: false,
    annotations: {},
    labels: {},
  }
  const notReady = toServerObject({ origin: '', baseUrl: '/' }, 'alice', hubServer, pod)
  t.same(
    notReady.status,
    { state: 'starting', ready: false, phase: 'Running' },
    'hub ready, pod not ready: starting',
  )
  t.equal(notReady.state.pod_name, 'jupyter-alice', 'a pod found by its labels is named in state')
  const escaped = toServerObject({ origin: '', baseUrl: '/' }, 'alice@example.com', hubServer, {
    ...pod,
    annotations: { 'renku.io/username': 'alice-40example-2ecom', 'renku.io/branch': 'master' },
  })
  t.equal(
    escaped.annotations['renku.io/username'],
    'alice@example.com',
    "the hub's user name, not the label's",
  )
  t.ok(matchesFilter(server, { namespace: 'ns', commit_sha: sha.toUpperCase() }))
  t.notOk(matchesFilter(server, { branch: 'dev' }))
})

t.test('autosave branch names and paths', async (t) => {
  t.same(parseAutosaveName('renku/autosave/alice/feature/x/0123abc/4567def', 'alice'), {
    branch: 'feature/x',
    commit: '0123abc',
  })
  for (const [name, why] of <[string, string][]>[
    ['renku/autosave/alice/master/0123abc/4567def', "another user's"],
    ['renku/autosave/bob/0123abc/4567def', 'no branch'],
    ['renku/autosave/bob/master/0123abc', 'no head'],
    ['renku/autosave/bob/master/0123ABC/4567def', 'not a lower-case sha'],
    ['renku/autosave/bob/master//0123abc/4567def', 'an empty part'],
    ['master', 'no autosave'],
  ]) {
    t.equal(parseAutosaveName(name, 'bob'), null, why)
  }

  const branch = (name: string, date: string) => ({ name, commit: { id: 'x', committed_date: date } })
  const branches = [
    branch('renku/autosave/bob/master/0123abc/1111111', '2026-01-01T10:00:00+02:00'),
    branch('renku/autosave/bob/master/0123abc/2222222', '2026-01-01T09:00:00Z'),
    branch('renku/autosave/bob/master/0123abc/x/0123abc/3333333', '2026-02-01T00:00:00Z'),
    branch('renku/autosave/bobby/master/0123abc/4444444', '2026-03-01T00:00:00Z'),
  ]
  t.same(
    autosavesOf(branches, 'bob').map((save) => [save.name.slice(-7), save.date]),
    [
      ['3333333', '2026-02-01T00:00:00.000Z'],
      ['2222222', '2026-01-01T09:00:00.000Z'],
      ['1111111', '2026-01-01T08:00:00.000Z'],
    ],
    'newest first, by the instant (offsets count), never a user with a longer name',
  )
  t.equal(
    autosaveToRestore(branches, 'bob', 'master', '0123ABCdef'),
    'renku/autosave/bob/master/0123abc/2222222',
    "the newest of exactly that launch, not of a branch 'master/0123abc/x'",
  )
  t.equal(autosaveToRestore(branches, 'bob', 'main', '0123abc'), undefined)

  const cases: [string, string, unknown][] = [
    ['GET', 'a/b/c/autosave', { kind: 'list', namespace: 'a/b', project: 'c' }],
    ['HEAD', 'a%2Fb/c/autosave', { kind: 'list', namespace: 'a/b', project: 'c' }],
    ['GET', 'autosave/c/autosave', { kind: 'list', namespace: 'autosave', project: 'c' }],
    ['GET', 'c/autosave', null],
    ['GET', 'a/c/autosave/x', null],
    ['GET', 'a//c/autosave', null],
    ['POST', 'a/c/autosave', null],
    ['GET', 'a/%E0%A4%A/autosave', null],
    [
      'DELETE',
      'g/autosave/p/autosave/renku/autosave/u/b/0123abc/4567def',
      { kind: 'delete', namespace: 'g/autosave', project: 'p', name: 'renku/autosave/u/b/0123abc/4567def' },
    ],
    [
      'DELETE',
      'g/p/autosave/renku%2Fautosave%2Fu%2Fb%2F0123abc%2F4567def',
      { kind: 'delete', namespace: 'g', project: 'p', name: 'renku/autosave/u/b/0123abc/4567def' },
    ],
    ['DELETE', 'g/p/autosave/whatever', { kind: 'delete', namespace: 'g', project: 'p', name: 'whatever' }],
    ['DELETE', 'g/p/autosave', null],
    ['DELETE', 'p/autosave/renku%2Fautosave%2Fu%2Fb%2F0123abc%2F4567def', null],
  ]
  for (const [method, path, expected] of cases)
    t.same(parseAutosavePath(method, path), expected, `${method} ${path}`)
})

t.test('the process refuses a bad configuration with one line naming the variable', async (t) => {
  const { execFile } = await import('node:child_process')
  const run = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', 'server.ts'],
        { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 },
        (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      )
      child.stdin?.end()
    })
  const missing = await run({ JUPYTERHUB_API_TOKEN: 'secret-token-value' })
  t.equal(missing.code, 1)
  t.equal(missing.stderr, 'renku-notebooks cannot start: JUPYTERHUB_API_URL is required but not set.\n')
  const badPort = await run({ ...required, PORT: 'http' })
  t.equal(badPort.code, 1)
  t.match(badPort.stderr, /^renku-notebooks cannot start: PORT must be a whole number from 0 to 65535\.\n$/)
  t.notMatch(badPort.stderr, /secret-token-value/)
  const badMetricsPort = await run({ ...required, METRICS_PORT: '-1' })
  t.equal(badMetricsPort.code, 1)
  t.equal(
    badMetricsPort.stderr,
    'renku-notebooks cannot start: METRICS_PORT must be a whole number from 0 to 65535.\n',
  )

  // A metrics port that is taken stops start-up too, rather than serving without metrics.
  const { createServer } = await import('node:net')
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => taken.close())
  const takenPort = (taken.address() as { port: number }).port
  const busy = await run({ ...required, HOST: '127.0.0.1', PORT: '0', METRICS_PORT: String(takenPort) })
  t.equal(busy.code, 1)
  t.match(
    busy.stderr,
    new RegExp(
      `^renku-notebooks cannot start: METRICS_PORT ${takenPort} cannot be listened on: .*EADDRINUSE.*\n$`,
    ),
  )
})

t.test('hub state copy: first list, drop-outs, own starts, failures, stop', async (t) => {
  const running = (name: string): HubServer => ({
    name,
    ready: true,
    pending: null,
    stopped: false,
    url: `/user/x/${name}/`,
    started: null,
    last_activity: null,
    user_options: {},
    state: null,
  })
  const stopped = (name: string): HubServer => ({ ...running(name), ready: false, stopped: true })
  const user = (name: string, ...servers: HubServer[]): HubUser => ({
    name,
    admin: false,
    servers: Object.fromEntries(servers.map((server) => [server.name, server])),
  })
  // The hub as the client shows it: who is active, and each user read alone.
  let active: HubUser[] = [user('alice', running('a'))]
  const alone = new Map<string, HubUser>()
  let down = false
  const calls: string[] = []
  const unreachable = () => new UpstreamError('JupyterHub', 'unavailable', 'refused')
  const hub = {
    async listActiveUsers(options: { onPage?: () => void } = {}) {
      calls.push('list')
      if (down) throw unreachable()
      options.onPage?.()
      return structuredClone(active)
    },
    async listUsersPage() {
      calls.push('sweep')
      if (down) throw unreachable()
      return { users: [], next: null }
    },
    async getUser(name: string) {
      calls.push(`user ${name}`)
      if (down) throw unreachable()
      return structuredClone(alone.get(name) ?? null)
    },
    async ping() {
      calls.push('ping')
      if (down) throw unreachable()
    },
    observe: () => () => {},
    async lastStart(): Promise<LastStart> {
      return { outcome: 'started' }
    },
  }
  const state = new HubReflector({ hub, pollIntervalMs: 50, maxAgeMs: 300, sweepIntervalMs: 60_000 })
  t.teardown(() => state.stop())
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

  t.equal((await state.read('alice'))?.servers.a?.ready, true, 'the first read waits for the first list')
  t.equal(await state.read('bob'), null, 'a user without servers')
  t.equal(calls.filter((call) => call.startsWith('user')).length, 0, 'no user was read alone')

  // alice's server stops: she leaves the active list; read alone once, she keeps it as stopped.
  alone.set('alice', user('alice', stopped('a'), stopped('')))
  active = []
  await sleep(200)
  t.equal((await state.read('alice'))?.servers.a?.stopped, true, 'the stopped server stays listed')
  await sleep(200)
  const aliceReads = calls.filter((call) => call === 'user alice').length
  t.ok(aliceReads >= 2, `read again while being read (${aliceReads})`)
  alone.delete('alice')
  await sleep(200)
  t.equal(await state.read('alice'), null, 'and gone once removed')

  // A start of this replica: starting until the hub answered, then what the hub says.
  const settle = state.starting('carol', 'c', { image: 'x' })
  t.equal(
    (await state.read('carol'))?.servers.c?.pending,
    'spawn',
    'a start not yet answered reads as pending',
  )
  alone.set('carol', user('carol', running('c')))
  await state.changed('carol')
  settle()
  t.equal((await state.read('carol'))?.servers.c?.ready, true, 'once answered, the hub’s word, at once')

  down = true
  const failure = await (async () => {
    for (let i = 0; i < 40; i++) {
      const outcome = await state.read('carol').catch((err: unknown) => err)
      if (outcome instanceof Error) return outcome
      await sleep(25)
    }
  })()
  t.ok(failure instanceof UpstreamError && failure.statusCode === 503, 'the hub gone: 503')
  t.equal((failure as UpstreamError).upstream, 'JupyterHub')
  down = false
  active = [user('carol', running('c'), running('d'))]
  await sleep(150)
  t.same(Object.keys((await state.read('carol'))?.servers ?? {}), ['c', 'd'], 'back, with fresh data')

  await state.stop()
  const after = calls.length
  await sleep(150)
  t.equal(calls.length, after, 'stopped: no more calls')
  t.ok(state.stats.stateReads > 0 && state.stats.polls > 0, 'counters count')
})

t.test('hub state copy: how a stopped server’s last start ended, asked once per stop', async (t) => {
  const server = (name: string, stoppedAt?: string): HubServer => ({
    name,
    ready: !stoppedAt,
    pending: null,
    stopped: !!stoppedAt,
    url: `/user/dave/${name}/`,
    started: stoppedAt ? null : '2026-01-01T10:00:00.000000Z',
    last_activity: stoppedAt ?? '2026-01-01T10:00:00.000000Z',
    user_options: {},
    state: null,
  })
  const dave = (...servers: HubServer[]): HubUser => ({
    name: 'dave',
    admin: false,
    servers: Object.fromEntries(servers.map((one) => [one.name, one])),
  })
  let active = [dave(server('a'), server('b', 't1'))]
  let alone: HubUser | null = null
  // What the hub's progress stream tells, per server; a thrown error is a hub that did not answer.
  const ends = new Map<string, LastStart | Error>([
    ['b', { outcome: 'failed', message: 'Spawn failed: no image' }],
  ])
  const asked: string[] = []
  const hub = {
    async listActiveUsers() {
      return structuredClone(active)
    },
    async listUsersPage() {
      return { users: [], next: null }
    },
    async getUser() {
      return structuredClone(alone)
    },
    async ping() {},
    observe: () => () => {},
    async lastStart(user: string, name: string): Promise<LastStart | undefined> {
      asked.push(`${user}/${name}`)
      const end = ends.get(name)
      if (end instanceof Error) throw end
      return end
    },
  }
  const state = new HubReflector({ hub, pollIntervalMs: 30, lastStartRetryMs: 300, sweepIntervalMs: 60_000 })
  t.teardown(() => state.stop())
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  const lastStartOf = async (name: string) => (await state.read('dave'))?.servers[name]?.last_start

  t.equal((await state.read('dave'))?.servers.a?.last_start, undefined, 'a running server: nothing asked')
  await sleep(200)
  t.same(await lastStartOf('b'), { outcome: 'failed', message: 'Spawn failed: no image' }, 'a failed spawn')
  t.same(asked, ['dave/b'], 'asked once, however many lists came since')

  // a is stopped at the hub: dave leaves the active list and is read alone; the first read
  // that shows it stopped already says how.
  ends.set('a', { outcome: 'started' })
  alone = dave(server('a', 't2'), server('b', 't1'))
  active = []
  await sleep(100)
  t.same(await lastStartOf('a'), { outcome: 'started' }, 'a server that did start, stopped')
  t.same(asked, ['dave/b', 'dave/a'], 'b was not asked about again')

  // b is launched again and fails again: a new stop, asked about again; the hub does not answer.
  ends.set('b', new UpstreamError('JupyterHub', 'timeout', 'no event within 2000 ms'))
  active = [dave(server('a', 't2'), { ...server('b'), ready: false, pending: 'spawn' })]
  await sleep(100)
  alone = dave(server('a', 't2'), server('b', 't3'))
  active = []
  await sleep(150)
  t.equal(await lastStartOf('b'), undefined, 'not known while the hub does not tell')
  t.equal(asked.filter((one) => one === 'dave/b').length, 2, 'and not asked again at once')
  ends.set('b', { outcome: 'failed', message: 'Spawn failed: still no image' })
  await sleep(500)
  t.same(
    await lastStartOf('b'),
    { outcome: 'failed', message: 'Spawn failed: still no image' },
    'asked later',
  )
  t.equal(state.stats.lastStartChecks, asked.length, 'counted')
})

t.test('hub state copy: the lists’ interval follows their cost; pod changes read one user', async (t) => {
  const server = (name: string, pending: string | null = null): HubServer => ({
    name,
    ready: !pending,
    pending,
    stopped: false,
    url: `/user/erin/${name}/`,
    started: null,
    last_activity: null,
    user_options: {},
    state: null,
  })
  const erin = (...servers: HubServer[]): HubUser => ({
    name: 'erin',
    admin: false,
    servers: Object.fromEntries(servers.map((one) => [one.name, one])),
  })
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  let listMs = 40
  let atHub: HubUser | null = null
  const calls: string[] = []
  const hub = {
    async listActiveUsers(options: { onPage?: () => void } = {}) {
      calls.push('list')
      await sleep(listMs)
      options.onPage?.()
      return atHub ? [structuredClone(atHub)] : []
    },
    async listUsersPage() {
      return { users: [], next: null }
    },
    async getUser(name: string) {
      calls.push(`user ${name}`)
      return structuredClone(atHub)
    },
    async ping() {
      calls.push('ping')
    },
    observe: () => () => {},
    async lastStart(): Promise<LastStart> {
      return { outcome: 'started' }
    },
  }
  const count = (what: string) => calls.filter((call) => call === what).length

  // The hub alone: a list that takes 40 ms may come every second (4% of the hub's time).
  const alone = new HubReflector({ hub, pollIntervalMs: 200, sweepIntervalMs: 600_000 })
  t.teardown(() => alone.stop())
  await alone.read('erin')
  await sleep(1100)
  t.ok(count('list') <= 3, `lists of 40 ms: about one a second, not one every 200 ms (${count('list')})`)
  t.ok(alone.stats.listIntervalMs >= 900, `interval ${alone.stats.listIntervalMs} ms`)
  await alone.stop()

  // With pod changes: the full list is a rare resync; a pod's change reads its user alone, and
  // again while the hub still shows the server starting.
  calls.length = 0
  listMs = 5
  let onPod: (user: string | null) => void = () => {}
  const podChanges = {
    watching: true,
    onUserPodsChanged(listener: (user: string | null) => void) {
      onPod = listener
      return () => {}
    },
  }
  const watched = new HubReflector({ hub, podChanges, userReadGapMs: 100, sweepIntervalMs: 600_000 })
  t.teardown(() => watched.stop())
  t.equal(await watched.read('erin'), null, 'no server yet')
  atHub = erin(server('w', 'spawn'))
  onPod('erin')
  await sleep(50)
  t.equal((await watched.read('erin'))?.servers.w?.pending, 'spawn', 'a pod created: its user read at once')
  atHub = erin(server('w'))
  await sleep(250)
  t.equal((await watched.read('erin'))?.servers.w?.ready, true, 'read again until the hub shows it running')
  const reads = count('user erin')
  await sleep(300)
  t.equal(count('user erin'), reads, 'and no more once it runs')
  for (let i = 0; i < 20; i++) onPod('erin')
  await sleep(150)
  t.ok(
    count('user erin') - reads <= 2,
    `twenty pod events in a burst: at most two reads (${count('user erin') - reads})`,
  )
  t.equal(count('list'), 1, 'one list only')
})

t.test(
  'hub state copy: a server followed by name while it starts is read at most once per gap',
  async (t) => {
    const pending: HubServer = {
      name: 'p',
      ready: false,
      pending: 'spawn',
      stopped: false,
      url: '/user/fay/p/',
      started: null,
      last_activity: null,
      user_options: {},
      state: null,
    }
    let atHub: HubUser = { name: 'fay', admin: false, servers: { p: pending } }
    let userReads = 0
    const hub = {
      async listActiveUsers() {
        return [structuredClone(atHub)]
      },
      async listUsersPage() {
        return { users: [], next: null }
      },
      async getUser() {
        userReads++
        return structuredClone(atHub)
      },
      async ping() {},
      observe: () => () => {},
      async lastStart(): Promise<LastStart> {
        return { outcome: 'started' }
      },
    }
    // Lists far apart, so only the reads by name can show the change.
    const state = new HubReflector({
      hub,
      pollIntervalMs: 60_000,
      userReadGapMs: 300,
      sweepIntervalMs: 600_000,
    })
    t.teardown(() => state.stop())
    t.equal((await state.read('fay', 'p'))?.servers.p?.pending, 'spawn')
    atHub = { ...atHub, servers: { p: { ...pending, ready: true, pending: null } } }
    const started = performance.now()
    while ((await state.read('fay', 'p'))?.servers.p?.ready !== true) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const took = performance.now() - started
    t.ok(took < 700, `the hub's change shows within the gap (${Math.round(took)} ms)`)
    t.ok(userReads <= 2, `reads of the user while polled every 20 ms: ${userReads}`)
    const after = userReads
    for (let i = 0; i < 10; i++) await state.read('fay', 'p')
    t.equal(userReads, after, 'a running server is answered from the copy')
  },
)
