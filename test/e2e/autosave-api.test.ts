/**
 * The autosave endpoints and the launch's restore choice, through the service over a real
 * JupyterHub and the GitLab stand-in, with autosave branches made as real refs in its
 * repositories.
 */
import t from 'tap'
import { eventually, startStack } from '../../dev/stack.js'
import { serverName } from '../../lib/servers/server-object.js'
import type { ServerObject } from '../../schemas/servers.js'
import { autosaveBranches, seedAutosave } from '../support/autosaves.js'

const stack = await startStack()
t.teardown(() => stack.stop())

const { world, users, hub, gitlab } = stack
const developer = stack.as(users.developer)
const { demo, notebook } = world.projects
const { masterFirst, masterSecond, feature } = world.commits.demo
const short = (sha: string) => sha.slice(0, 7)
const enc = encodeURIComponent

const seed = (user: string, branch: string, commitSha: string, head: string, date: string, project = demo) =>
  seedAutosave(project, { user, branch, commitSha, head, date, files: { 'draft.md': `${user} ${date}\n` } })

const older = await seed('developer', 'master', masterFirst, masterFirst, '2026-03-01T09:00:00+01:00')
const newest = await seed('developer', 'master', masterFirst, masterSecond, '2026-03-02T09:00:00+01:00')
const onFeature = await seed('developer', 'feature', feature, feature, '2026-03-01T12:00:00Z')
const othersSave = await seed('maintainer', 'master', masterFirst, masterFirst, '2026-03-03T09:00:00Z')
const guestsSave = await seed('guest', 'master', masterFirst, masterFirst, '2026-03-03T09:00:00Z')
const nested = await seed(
  'developer',
  'main',
  world.commits.notebook.main,
  world.commits.notebook.main,
  '2026-03-04T09:00:00Z',
  notebook,
)

const deletesAtGitLab = () =>
  gitlab.requests.filter((r) => r.method === 'DELETE' && r.path.includes('/repository/branches/')).length

t.test('GET <namespace>/<project>/autosave lists the caller’s own, newest first', async (t) => {
  const list = await developer('GET', 'demo-group/demo-project/autosave')
  t.equal(list.status, 200)
  t.same(list.body, {
    pvsSupport: false,
    autosaves: [
      {
        name: newest,
        branch: 'master',
        commit: short(masterFirst),
        date: '2026-03-02T08:00:00.000Z',
        pvs: false,
      },
      {
        name: onFeature,
        branch: 'feature',
        commit: short(feature),
        date: '2026-03-01T12:00:00.000Z',
        pvs: false,
      },
      {
        name: older,
        branch: 'master',
        commit: short(masterFirst),
        date: '2026-03-01T08:00:00.000Z',
        pvs: false,
      },
    ],
  })
  t.notMatch(JSON.stringify(list.body), /maintainer|guest/, "never another user's")
  const maintainers = await stack.as(users.maintainer)('GET', 'demo-group/demo-project/autosave')
  t.same(
    maintainers.body.autosaves.map((save: { name: string }) => save.name),
    [othersSave],
    'a maintainer sees only their own too',
  )

  const search = gitlab.requests.findLast((r) => r.path.endsWith('/repository/branches'))
  t.match(
    new URLSearchParams(search?.query).get('search'),
    '^renku/autosave/maintainer/',
    "GitLab is asked for the caller's prefix",
  )

  for (const path of [
    'science/lab/public-notebook/autosave',
    'science%2Flab/public-notebook/autosave',
    'science%2Flab/public-notebook/autosave?ignored=1',
  ]) {
    const found = await developer('GET', path)
    t.equal(found.status, 200, path)
    t.same(
      found.body.autosaves.map((save: { name: string }) => save.name),
      [nested],
      `${path}: a namespace with a slash`,
    )
  }
  t.same((await stack.as(users.outsider)('GET', 'science/lab/public-notebook/autosave')).body, {
    pvsSupport: false,
    autosaves: [],
  })
})

t.test('listing refused', async (t) => {
  const cases: [string, ReturnType<typeof stack.as>, string, number, string][] = [
    [
      'a private project the caller cannot see',
      stack.as(users.outsider),
      'demo-group/demo-project',
      404,
      'PROJECT_NOT_FOUND',
    ],
    ['a project that does not exist', developer, 'demo-group/nope', 404, 'PROJECT_NOT_FOUND'],
    ['a namespace that does not exist', developer, 'no/such/group/demo-project', 404, 'PROJECT_NOT_FOUND'],
    ['a path GitLab would not have', developer, 'demo-group/-x', 404, 'PROJECT_NOT_FOUND'],
    [
      'a guest, who may not read code',
      stack.as(users.guest),
      'demo-group/demo-project',
      403,
      'ACCESS_DENIED',
    ],
    ['no credentials', stack.as(null), 'demo-group/demo-project', 401, 'NOT_AUTHENTICATED'],
    [
      'no credentials, nested namespace',
      stack.as(null),
      'science/lab/public-notebook',
      401,
      'NOT_AUTHENTICATED',
    ],
  ]
  for (const [what, call, project, status, code] of cases) {
    const response = await call('GET', `${project}/autosave`)
    t.equal(response.status, status, `${what}: ${status}`)
    t.equal(response.body?.code, code, `${what}: ${code}`)
    t.type(response.body?.messages?.error, 'string')
  }
  const browser = await stack.as(null)('GET', 'science/lab/public-notebook/autosave', undefined, {
    accept: 'text/html',
  })
  t.equal(browser.status, 302, 'a browser is sent to log in')
  t.match(browser.headers.get('location'), /login\?next=.*science%2Flab%2Fpublic-notebook%2Fautosave/)
})

t.test('DELETE <namespace>/<project>/autosave/<name>', async (t) => {
  const before = deletesAtGitLab()
  for (const [what, call, name] of [
    ["another user's autosave", developer, othersSave],
    ["another user's, raw slashes", developer, othersSave],
    ['a name that is no autosave', developer, 'master'],
    ['a name under the caller’s prefix that is no autosave', developer, 'renku/autosave/developer/x'],
  ] as const) {
    const path = what.includes('raw') ? name : enc(name)
    const refused = await call('DELETE', `demo-group/demo-project/autosave/${path}`)
    t.equal(refused.status, 404, `${what}: 404`)
    t.equal(refused.body.code, 'AUTOSAVE_NOT_FOUND', what)
  }
  t.equal(deletesAtGitLab(), before, 'GitLab was never asked to delete them')

  const guest = await stack.as(users.guest)('DELETE', `demo-group/demo-project/autosave/${enc(guestsSave)}`)
  t.equal(guest.status, 403, 'below Developer: 403')
  t.equal(guest.body.code, 'ACCESS_DENIED')
  const outsider = await stack.as(users.outsider)(
    'DELETE',
    `demo-group/demo-project/autosave/${enc('renku/autosave/outsider/master/0123456/0123456')}`,
  )
  t.equal(outsider.status, 404)
  t.equal(outsider.body.code, 'PROJECT_NOT_FOUND', 'a project the caller cannot see')
  t.equal(
    (await stack.as(null)('DELETE', `demo-group/demo-project/autosave/${older}`)).status,
    401,
    'no credentials',
  )
  t.same(
    await autosaveBranches(demo),
    [guestsSave, othersSave, onFeature, newest, older].sort(),
    'nothing deleted yet',
  )

  const encoded = await developer('DELETE', `demo-group/demo-project/autosave/${enc(onFeature)}`)
  t.equal(encoded.status, 204, 'a name with %2F')
  const raw = await developer('DELETE', `demo-group%2F/demo-project/autosave/${older}`)
  t.equal(raw.status, 404, 'an empty namespace part names no project')
  const rawSlashes = await developer('DELETE', `demo-group/demo-project/autosave/${older}`)
  t.equal(rawSlashes.status, 204, 'a name with raw slashes')
  const nestedRaw = await developer('DELETE', `science/lab/public-notebook/autosave/${nested}`)
  t.equal(nestedRaw.status, 204, 'a namespace and a name with raw slashes')
  t.match(
    await (await fetch(stack.metricsUrl as string)).text(),
    /^renku_notebooks_autosaves_total\{outcome="deleted"\} [1-9]/m,
    'the metrics count deletions',
  )
  t.same(await autosaveBranches(demo), [guestsSave, othersSave, newest].sort(), 'exactly those two are gone')
  t.same(await autosaveBranches(notebook), [])

  const again = await developer('DELETE', `demo-group/demo-project/autosave/${enc(onFeature)}`)
  t.equal(again.status, 404, 'deleting it again')
  t.equal(again.body.code, 'AUTOSAVE_NOT_FOUND')
  const list = await developer('GET', 'demo-group/demo-project/autosave')
  t.same(
    list.body.autosaves.map((save: { name: string }) => save.name),
    [newest],
  )
})

t.test('GitLab logins without the scopes autosave needs: 403 GITLAB_SCOPE_MISSING', async (t) => {
  t.teardown(() => hub.setGitLabToken('developer', world.users.developer.token))
  const launch = { namespace: 'demo-group', project: 'demo-project', commit_sha: masterFirst }

  const noApi = gitlab.issueToken('developer', { scopes: ['read_api', 'write_repository', 'read_user'] })
  await hub.setGitLabToken('developer', noApi.accessToken)
  const deleting = await developer('DELETE', `demo-group/demo-project/autosave/${enc(newest)}`)
  t.equal(deleting.status, 403, 'deleting needs api')
  t.equal(deleting.body.code, 'GITLAB_SCOPE_MISSING')
  t.match(deleting.body.messages.error, /api scope/)
  t.same(await autosaveBranches(demo), [guestsSave, othersSave, newest].sort(), 'nothing deleted')
  t.equal(
    (await developer('GET', 'demo-group/demo-project/autosave')).status,
    200,
    'listing needs read_api only',
  )

  const readOnly = gitlab.issueToken('developer', { scopes: ['read_api', 'read_repository'] })
  await hub.setGitLabToken('developer', readOnly.accessToken)
  const refused = await developer('POST', 'servers', launch)
  t.equal(refused.status, 403, 'a launch whose work could not be saved')
  t.equal(refused.body.code, 'GITLAB_SCOPE_MISSING')
  t.match(refused.body.messages.error, /write_repository/)
  const infoCalls = () => gitlab.requests.filter((r) => r.path === '/oauth/token/info').length
  const calls = infoCalls()
  t.equal((await developer('POST', 'servers', launch)).status, 403, 'again')
  t.equal(infoCalls(), calls, "the token's scopes are remembered")
  const missing = await developer('POST', 'servers', { ...launch, project: 'nope' })
  t.equal(missing.body.code, 'PROJECT_NOT_FOUND', 'a project that does not exist is said first')

  const listOnly = gitlab.issueToken('developer', { scopes: ['read_user', 'write_repository'] })
  await hub.setGitLabToken('developer', listOnly.accessToken)
  const list = await developer('GET', 'demo-group/demo-project/autosave')
  t.equal(list.status, 403, 'listing without read_api')
  t.equal(list.body.code, 'GITLAB_SCOPE_MISSING')

  // A personal access token: GitLab's token info does not know it; its own endpoint tells.
  gitlab.faults.push({
    path: /^\/oauth\/token\/info$/,
    status: 401,
    body: { error: 'invalid_token', error_description: 'The access token is invalid' },
  })
  t.teardown(() => {
    gitlab.faults.length = 0
    world.users.maintainer.scopes = undefined
  })
  world.users.maintainer.scopes = ['read_api', 'read_repository']
  const pat = await stack.as(users.maintainer)('POST', 'servers', launch)
  t.equal(pat.status, 403, 'a personal access token without write_repository')
  t.equal(pat.body.code, 'GITLAB_SCOPE_MISSING')
  t.ok(
    gitlab.requests.some((r) => r.path === '/api/v4/personal_access_tokens/self' && r.status === 200),
    'asked GitLab about the personal access token',
  )
  await hub.setGitLabToken('developer', world.revokedToken)
  const rejected = await developer('POST', 'servers', launch)
  t.equal(rejected.status, 401, 'a token GitLab rejects everywhere')
  t.equal(rejected.body.code, 'GITLAB_TOKEN_REJECTED')
})

t.test('other paths are unaffected by the autosave routes', async (t) => {
  const anonymous = stack.as(null)
  const cases: [string, string, ReturnType<typeof stack.as>, number, string | null][] = [
    ['GET', 'health', anonymous, 200, null],
    ['GET', 'servers', developer, 200, null],
    ['GET', 'user', developer, 200, null],
    ['GET', 'openapi.json', anonymous, 200, null],
    ['GET', 'server_options', developer, 200, null],
    ['GET', 'servers/nope', developer, 404, 'SERVER_NOT_FOUND'],
    ['DELETE', 'servers/nope', developer, 404, 'SERVER_NOT_FOUND'],
    ['GET', 'logs/nope', developer, 404, 'SERVER_NOT_FOUND'],
    ['GET', 'servers', anonymous, 401, 'NOT_AUTHENTICATED'],
    ['GET', 'nope', anonymous, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'nope', developer, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'a/b/c', anonymous, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'demo-group/demo-project/autosave/x', developer, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'demo-group/demo-project/autosave/', developer, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'demo-project/autosave', developer, 404, 'ROUTE_NOT_FOUND'],
    ['GET', 'a//b/autosave', developer, 404, 'ROUTE_NOT_FOUND'],
    ['DELETE', 'demo-group/demo-project/autosave', developer, 404, 'ROUTE_NOT_FOUND'],
    ['DELETE', 'a/b/c', anonymous, 404, 'ROUTE_NOT_FOUND'],
    ['POST', 'demo-group/demo-project/autosave', developer, 404, 'ROUTE_NOT_FOUND'],
  ]
  for (const [method, path, call, status, code] of cases) {
    const response = await call(method, path)
    t.equal(response.status, status, `${method} ${path}: ${status}`)
    if (code) t.equal(response.body?.code, code, `${method} ${path}: ${code}`)
  }
  const browser = await anonymous('GET', 'a/b/c', undefined, { accept: 'text/html' })
  t.equal(browser.status, 404, 'an unknown path is not a login redirect')
  const docs = await anonymous('GET', 'docs/', undefined, { accept: 'text/html' })
  t.equal(docs.status, 200, 'Swagger UI')
  t.equal(
    (await developer('GET', 'servers/x/autosave')).body.code,
    'PROJECT_NOT_FOUND',
    'a group named servers',
  )
})

t.test('a launch that starts a server restores the newest autosave of its branch and commit', async (t) => {
  const launch = { namespace: 'demo-group', project: 'demo-project', commit_sha: short(masterFirst) }
  const name = serverName('demo-group', 'demo-project', 'master', masterFirst)
  const started = await developer<ServerObject>('POST', 'servers', launch)
  t.ok([201, 202].includes(started.status), `started (${started.status})`)
  t.equal(started.body.annotations['renku.io/autosave'], newest, 'the server object names it')
  const options = await hub.spawnedOptions('developer', name)
  t.equal(options?.autosave, newest, 'the user options carry the newest of that launch')
  t.match(
    await (await fetch(stack.metricsUrl as string)).text(),
    /^renku_notebooks_autosaves_total\{outcome="restored"\} 1$/m,
    'the metrics count the restore',
  )

  const running = await eventually(
    async () => {
      const { body } = await developer<ServerObject>('GET', `servers/${name}`)
      return body.status?.state === 'running' ? body : undefined
    },
    90_000,
    'the server to run',
  )
  t.equal(running.annotations['renku.io/autosave'], newest, 'and keeps naming it')

  const later = await seed('developer', 'master', masterFirst, feature, '2026-04-01T00:00:00Z')
  t.teardown(() => developer('DELETE', `demo-group/demo-project/autosave/${enc(later)}`))
  const again = await developer<ServerObject>('POST', 'servers', launch)
  t.equal(again.status, 200, 'a launch of the running server')
  t.equal(again.body.annotations['renku.io/autosave'], newest, 'restores nothing new')
  t.equal((await hub.spawnedOptions('developer', name))?.autosave, newest, 'no new spawn')

  const plain = await developer<ServerObject>('POST', 'servers', { ...launch, commit_sha: masterSecond })
  t.ok([201, 202].includes(plain.status))
  t.notOk('renku.io/autosave' in plain.body.annotations, 'no autosave of that commit: no annotation')
  const plainOptions = await hub.spawnedOptions('developer', plain.body.name)
  t.notOk(plainOptions && 'autosave' in plainOptions, 'and no autosave key in the user options')

  await eventually(async () => {
    const { body } = await developer<ServerObject>('GET', `servers/${plain.body.name}`)
    return body.status?.state === 'running' ? true : undefined
  }, 90_000)
  for (const server of [name, plain.body.name]) {
    t.ok([202, 204].includes((await developer('DELETE', `servers/${server}`)).status), `${server} stopped`)
  }
})
