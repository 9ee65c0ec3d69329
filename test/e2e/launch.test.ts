/**
 * Launching through the service over a real JupyterHub: the hub starts a real notebook
 * server with the project cloned at the commit; list, get, logs and stop follow.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { eventually, startStack } from '../../dev/stack.js'
import { serverName } from '../../lib/servers/server-object.js'
import type { ServerObject } from '../../schemas/servers.js'
import { BUNDLED_DEFAULTS } from '../support/server-options.js'

const exec = promisify(execFile)
const stack = await startStack({ hubEnv: { JHUB_NAMED_SERVER_LIMIT: '3' } })
t.teardown(() => stack.stop())

const { world, users, hub, gitlab } = stack
const developer = stack.as(users.developer)
const { masterFirst, masterSecond, feature } = world.commits.demo
const demo = { namespace: 'demo-group', project: 'demo-project' }
const workDir = (user: string, server: string) => path.join(hub.runDir, 'work', user, server, 'demo-project')

async function readyServer(call: typeof developer, name: string): Promise<ServerObject> {
  return eventually(
    async () => {
      const { status, body } = await call<ServerObject>('GET', `servers/${name}`)
      return status === 200 && body.status.state === 'running' ? body : undefined
    },
    60_000,
    `${name} to be running`,
  )
}

t.test('launch, use, list, read logs of and stop a server', async (t) => {
  const expectedName = serverName('demo-group', 'demo-project', 'master', masterFirst)
  const launch = await developer<ServerObject>('POST', 'servers', {
    ...demo,
    commit_sha: masterFirst.slice(0, 10).toUpperCase(),
  })
  t.ok([201, 202].includes(launch.status), `a new server: 201 or 202 (got ${launch.status})`)
  const server = launch.body
  t.equal(server.name, expectedName, 'named from project and md5 of namespace+project+branch+full sha')
  t.equal(server.url, `${hub.publicUrl}/user/developer/${expectedName}/`)
  t.equal(
    server.image,
    `${gitlab.registryHost}/demo-group/demo-project:${masterFirst.slice(0, 7)}`,
    "the commit's image",
  )
  t.same(server.annotations, {
    'renku.io/username': 'developer',
    'renku.io/namespace': 'demo-group',
    'renku.io/projectName': 'demo-project',
    'renku.io/branch': 'master',
    'renku.io/commit-sha': masterFirst,
    'renku.io/gitlabProjectId': '101',
    'renku.io/repository': `${gitlab.url}/demo-group/demo-project.git`,
    'renku.io/default_image_used': 'False',
  })
  t.same(server.resources, { cpu: '0.5', memory: '1G', storage: '1G', gpu: '0' })

  const options = await hub.spawnedOptions('developer', expectedName)
  t.same(
    options,
    {
      namespace: 'demo-group',
      project: 'demo-project',
      branch: 'master',
      commit_sha: masterFirst,
      project_id: 101,
      notebook: null,
      image: server.image,
      default_image_used: false,
      repository: `${gitlab.url}/demo-group/demo-project.git`,
      server_options: BUNDLED_DEFAULTS,
    },
    'the spawner received the user options of schemas/user-options.ts, and no token',
  )

  const running = await readyServer(developer, expectedName)
  t.same(running.status, { state: 'running', ready: true })
  const status = await fetch(`${running.url}api/status`, {
    headers: { authorization: `token ${users.developer.token}` },
  })
  t.equal(status.status, 200, 'the notebook server answers at its URL')
  await status.arrayBuffer()

  const dir = workDir('developer', expectedName)
  t.equal(
    (await exec('git', ['-C', dir, 'rev-parse', 'HEAD'])).stdout.trim(),
    masterFirst,
    'HEAD is the commit',
  )
  t.equal((await exec('git', ['-C', dir, 'rev-parse', '--abbrev-ref', 'HEAD'])).stdout.trim(), 'master')
  t.notMatch(
    await readFile(path.join(dir, '.git', 'config'), 'utf8'),
    world.users.developer.token,
    'no token in git config',
  )

  const again = await developer<ServerObject>('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(again.status, 200, 'launching it again gives the existing server')
  t.equal(again.body.name, expectedName)

  for (const filter of [
    'namespace=demo-group',
    'project=demo-project',
    'branch=master',
    `commit_sha=${masterFirst}`,
    `namespace=demo-group&project=demo-project&branch=master&commit_sha=${masterFirst}`,
  ]) {
    const list = await developer<{ servers: Record<string, ServerObject> }>('GET', `servers?${filter}`)
    t.equal(list.status, 200)
    t.same(Object.keys(list.body.servers), [expectedName], `filter ${filter} finds it`)
  }
  for (const filter of ['namespace=other', 'project=other', 'branch=feature', `commit_sha=${masterSecond}`]) {
    const list = await developer<{ servers: Record<string, ServerObject> }>('GET', `servers?${filter}`)
    t.same(list.body.servers, {}, `filter ${filter} excludes it`)
  }

  const logs = await developer<string[]>('GET', `logs/${expectedName}`)
  t.equal(logs.status, 200)
  t.ok(Array.isArray(logs.body) && logs.body.length > 1, 'log lines')
  t.notOk(logs.body.join('\n').includes(world.users.developer.token), 'no token in the logs')
  const last = await developer<string[]>('GET', `logs/${expectedName}?max_lines=1`)
  t.same(last.body, logs.body.slice(-1), 'max_lines=1 gives the last line')
  const all = await developer<string[]>('GET', `logs/${expectedName}?max_lines=0`)
  t.ok(all.body.length >= logs.body.length, 'max_lines=0 gives all lines')
  for (const bad of ['-1', 'many']) {
    const refused = await developer('GET', `logs/${expectedName}?max_lines=${bad}`)
    t.equal(refused.status, 422, `max_lines=${bad} is refused`)
    t.ok(refused.body.messages.query.max_lines, 'naming the query parameter')
  }

  const user = await developer<{ name: string; admin: boolean; servers: Record<string, ServerObject> }>(
    'GET',
    'user',
  )
  t.equal(user.status, 200)
  t.equal(user.body.name, 'developer')
  t.same(Object.keys(user.body.servers), [expectedName])
  t.notMatch(JSON.stringify(user.body), /auth_state|access_token|glpat-/, 'no tokens')

  const stopped = await developer('DELETE', `servers/${expectedName}`)
  t.ok([202, 204].includes(stopped.status), `stopped (${stopped.status})`)
  await eventually(async () =>
    (await developer('GET', `servers/${expectedName}`)).status === 404 ? true : undefined,
  )
  const gone = await fetch(`${running.url}api/status`, {
    headers: { authorization: `token ${users.developer.token}` },
    redirect: 'manual',
  })
  t.not(gone.status, 200, 'the notebook server no longer answers')
  await gone.arrayBuffer()
  t.equal((await developer('DELETE', `servers/${expectedName}`)).status, 404, 'stopping it again: 404')
})

t.test(
  'identical concurrent launches give one server; a commit without image gets the default image',
  async (t) => {
    const body = { ...demo, commit_sha: masterSecond, branch: 'master' }
    const launches = await Promise.all(
      [1, 2, 3, 4].map(() => developer<ServerObject>('POST', 'servers', body)),
    )
    const names = new Set(launches.map((launch) => launch.body.name))
    t.equal(names.size, 1, 'one name')
    for (const launch of launches) t.ok([200, 201, 202].includes(launch.status), `status ${launch.status}`)
    const list = await developer<{ servers: Record<string, ServerObject> }>('GET', 'servers')
    t.equal(Object.keys(list.body.servers).length, 1, 'the hub has one server')
    const [name] = names
    const server = await readyServer(developer, name as string)
    t.equal(server.image, 'renku/singleuser:latest')
    t.equal(server.annotations['renku.io/default_image_used'], 'True')

    // Users are isolated on every endpoint.
    const guest = stack.as(users.guest)
    t.equal((await guest('GET', `servers/${name}`)).status, 404, 'another user cannot see it')
    t.same((await guest('GET', 'servers')).body, { servers: {} }, 'nor list it')
    t.equal((await guest('GET', `logs/${name}`)).status, 404, 'nor read its logs')
    t.equal((await guest('DELETE', `servers/${name}`)).status, 404, 'nor stop it')
    t.equal((await developer('GET', `servers/${name}`)).status, 200, 'it is still there')

    t.ok([202, 204].includes((await developer('DELETE', `servers/${name}`)).status))
  },
)

t.test('branch, notebook, server options and an explicit image', async (t) => {
  const image = `${gitlab.registryHost}/demo-group/demo-project:${masterFirst.slice(0, 7)}`
  const launch = await developer<ServerObject>('POST', 'servers', {
    ...demo,
    commit_sha: feature,
    branch: 'feature',
    notebook: 'notebooks/analysis.ipynb',
    image,
    serverOptions: { cpu_request: 1, mem_request: '2G', lfs_auto_fetch: true },
  })
  t.ok([201, 202].includes(launch.status), `launched (${launch.status})`)
  t.equal(launch.body.image, image, 'the explicit image, checked in the registry with the user’s token')
  t.same(launch.body.resources, { cpu: '1', memory: '2G', storage: '1G', gpu: '0' })
  const options = await hub.spawnedOptions('developer', launch.body.name)
  t.equal(options?.notebook, 'notebooks/analysis.ipynb')
  t.equal(options?.branch, 'feature')
  t.equal((options?.server_options as Record<string, unknown> | undefined)?.lfs_auto_fetch, true)
  await readyServer(developer, launch.body.name)
  const dir = workDir('developer', launch.body.name)
  t.equal((await exec('git', ['-C', dir, 'rev-parse', 'HEAD'])).stdout.trim(), feature)
  t.equal((await exec('git', ['-C', dir, 'rev-parse', '--abbrev-ref', 'HEAD'])).stdout.trim(), 'feature')
  t.ok([202, 204].includes((await developer('DELETE', `servers/${launch.body.name}`)).status))
})

t.test('launches refused with the error body', async (t) => {
  const cases: [string, ReturnType<typeof stack.as>, unknown, number, string][] = [
    ['no token', stack.as(null), { ...demo, commit_sha: masterFirst }, 401, 'NOT_AUTHENTICATED'],
    [
      'a private project the user cannot see',
      stack.as(users.outsider),
      { ...demo, commit_sha: masterFirst },
      404,
      'PROJECT_NOT_FOUND',
    ],
    [
      'a project that does not exist',
      developer,
      { namespace: 'demo-group', project: 'nope', commit_sha: masterFirst },
      404,
      'PROJECT_NOT_FOUND',
    ],
    ['a guest', stack.as(users.guest), { ...demo, commit_sha: masterFirst }, 403, 'ACCESS_DENIED'],
    [
      'an unknown branch',
      developer,
      { ...demo, commit_sha: masterFirst, branch: 'nope' },
      404,
      'BRANCH_NOT_FOUND',
    ],
    ['an unknown commit', developer, { ...demo, commit_sha: 'deadbeefdeadbeef' }, 404, 'COMMIT_NOT_FOUND'],
    [
      'an image that does not exist',
      developer,
      { ...demo, commit_sha: masterFirst, image: `${gitlab.registryHost}/demo-group/demo-project:nope` },
      404,
      'IMAGE_NOT_FOUND',
    ],
    [
      'an image in a private repository of another project',
      stack.as(users.outsider),
      {
        namespace: 'science/lab',
        project: 'public-notebook',
        commit_sha: world.commits.notebook.main,
        image: `${gitlab.registryHost}/demo-group/demo-project:${masterFirst.slice(0, 7)}`,
      },
      403,
      'ACCESS_DENIED',
    ],
    [
      'a registry that cannot be reached',
      developer,
      { ...demo, commit_sha: masterFirst, image: '127.0.0.1:1/a/b:c' },
      503,
      'UPSTREAM_UNAVAILABLE',
    ],
    [
      'an unknown server option',
      developer,
      { ...demo, commit_sha: masterFirst, serverOptions: { turbo: true } },
      422,
      'INVALID_SERVER_OPTIONS',
    ],
    [
      'a server option of the wrong type',
      developer,
      { ...demo, commit_sha: masterFirst, serverOptions: { cpu_request: '1.0' } },
      422,
      'INVALID_SERVER_OPTIONS',
    ],
    [
      'a missing field',
      developer,
      { namespace: 'demo-group', commit_sha: masterFirst },
      422,
      'VALIDATION_ERROR',
    ],
    [
      'an unknown field',
      developer,
      { ...demo, commit_sha: masterFirst, colour: 'blue' },
      422,
      'VALIDATION_ERROR',
    ],
    ['a sha that is not hex', developer, { ...demo, commit_sha: 'not-a-sha!' }, 422, 'VALIDATION_ERROR'],
    ['a sha too short', developer, { ...demo, commit_sha: 'abc12' }, 422, 'VALIDATION_ERROR'],
    [
      'a number for a string',
      developer,
      { ...demo, commit_sha: masterFirst, branch: 7 },
      422,
      'VALIDATION_ERROR',
    ],
    ['a body that is a list', developer, [1, 2], 422, 'VALIDATION_ERROR'],
    [
      'an invalid image name',
      developer,
      { ...demo, commit_sha: masterFirst, image: 'Not An Image' },
      422,
      'VALIDATION_ERROR',
    ],
    ['a body that is not JSON', developer, '{"namespace": ', 400, 'INVALID_JSON'],
  ]
  for (const [what, call, body, status, code] of cases) {
    const response = await call('POST', 'servers', body)
    t.equal(response.status, status, `${what}: ${status}`)
    t.equal(response.body?.code, code, `${what}: ${code}`)
    t.type(response.body?.messages?.error, 'string', `${what}: a sentence`)
  }
  const missing = await developer('POST', 'servers', { namespace: 'demo-group', commit_sha: 'zz' })
  t.same(missing.body.messages.json, {
    project: ['is required'],
    commit_sha: [missing.body.messages.json.commit_sha[0]],
  })
  const form = await developer('POST', 'servers', 'namespace=x', { 'content-type': 'text/plain' })
  t.equal(form.status, 415, 'only JSON bodies')
  const options = await developer('POST', 'servers', {
    ...demo,
    commit_sha: masterFirst,
    serverOptions: { cpu_request: '1.0', turbo: 1 },
  })
  t.same(
    Object.keys(options.body.messages.json).sort(),
    ['serverOptions.cpu_request', 'serverOptions.turbo'],
    'each bad key is named',
  )

  const list = await developer<{ servers: object }>('GET', 'servers')
  t.same(list.body.servers, {}, 'no refused launch left a server behind')
})

t.test('GitLab credentials that are missing or rejected ask the user to log in again', async (t) => {
  const withoutGitLab = await hub.createUser('no-gitlab-login')
  const none = await stack.as(withoutGitLab)('POST', 'servers', { ...demo, commit_sha: masterFirst })
  await hub.setGitLabToken('maintainer', null)
  const cleared = await stack.as(users.maintainer)('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(cleared.status, 401, 'an auth_state without a GitLab token')
  t.equal(cleared.body.code, 'GITLAB_TOKEN_MISSING')
  t.equal(none.status, 401)
  t.equal(none.body.code, 'GITLAB_TOKEN_MISSING')
  t.match(none.body.messages.error, /log in again/)
  await hub.setGitLabToken('maintainer', world.revokedToken)
  const revoked = await stack.as(users.maintainer)('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(revoked.status, 401)
  t.equal(revoked.body.code, 'GITLAB_TOKEN_REJECTED')
  t.match(revoked.body.messages.error, /log in again/)
  await hub.setGitLabToken('maintainer', world.users.maintainer.token)
})

t.test('GitLab failing gives 502 naming it, never echoing its body', async (t) => {
  gitlab.faults.push({
    server: 'gitlab',
    path: /^\/api\/v4\/projects\//,
    status: 500,
    body: { message: 'secret internals' },
  })
  t.teardown(() => {
    gitlab.faults.length = 0
  })
  const response = await developer('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(response.status, 502)
  t.equal(response.body.code, 'UPSTREAM_BAD_RESPONSE')
  t.match(response.body.messages.error, /GitLab/)
  t.notMatch(JSON.stringify(response.body), /secret internals/)
})

t.test('a GitLab login without the API scope is a 403 saying so', async (t) => {
  gitlab.faults.push({
    server: 'gitlab',
    path: /^\/api\/v4\/projects\//,
    status: 403,
    body: {
      error: 'insufficient_scope',
      error_description: 'The request requires higher privileges than provided by the access token.',
      scope: 'api read_api',
    },
  })
  t.teardown(() => {
    gitlab.faults.length = 0
  })
  const response = await developer('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(response.status, 403)
  t.equal(response.body.code, 'GITLAB_SCOPE_MISSING')
  t.match(response.body.messages.error, /read_api/)
})

t.test('a spawn that fails at the hub is 502 naming JupyterHub, and shows as failed', async (t) => {
  // The clone fails: the git server refuses, as if the repository were broken.
  gitlab.faults.push({ server: 'gitlab', path: /\.git\//, status: 500, body: {} })
  t.teardown(() => {
    gitlab.faults.length = 0
  })
  // A user who has not cloned this commit before, so the clone cannot be skipped.
  const maintainer = stack.as(users.maintainer)
  const name = serverName('demo-group', 'demo-project', 'master', masterFirst)
  const response = await maintainer('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.equal(response.status, 502)
  t.match(response.body.messages.error, /JupyterHub/)
  const failed = await maintainer<ServerObject>('GET', `servers/${name}`)
  if (failed.status === 200) {
    t.equal(failed.body.status.state, 'failed', 'a failed spawn is listed as failed')
    t.equal((await maintainer('DELETE', `servers/${name}`)).status, 204, 'and can be removed')
  } else {
    t.equal(failed.status, 404, 'or is gone')
  }
  gitlab.faults.length = 0
  const retried = await maintainer<ServerObject>('POST', 'servers', { ...demo, commit_sha: masterFirst })
  t.ok([201, 202].includes(retried.status), 'a later launch works again')
  await readyServer(maintainer, name)
  t.ok([202, 204].includes((await maintainer('DELETE', `servers/${name}`)).status))
})

t.test('the hub’s named server limit is a 409 asking to stop one', async (t) => {
  const maintainer = stack.as(users.maintainer)
  const commits = [masterFirst, masterSecond, feature]
  const branches = ['master', 'master', 'feature']
  const started: string[] = []
  for (const [i, commit] of commits.entries()) {
    const launch = await maintainer<ServerObject>('POST', 'servers', {
      ...demo,
      commit_sha: commit,
      branch: branches[i],
    })
    t.ok([201, 202].includes(launch.status), `server ${i + 1} launched`)
    started.push(launch.body.name)
  }
  const fourth = await maintainer('POST', 'servers', { ...demo, commit_sha: masterFirst, branch: 'feature' })
  t.equal(fourth.status, 409)
  t.equal(fourth.body.code, 'SERVER_LIMIT_REACHED')
  t.match(fourth.body.messages.error, /stop one/)
  await Promise.all(started.map((name) => readyServer(maintainer, name)))
  await Promise.all(started.map((name) => maintainer('DELETE', `servers/${name}`)))
})
