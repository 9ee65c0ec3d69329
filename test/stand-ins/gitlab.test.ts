import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { autosaveBranches, seedAutosave } from '../support/autosaves.js'
import { gitEnvWithToken, isolatedGitEnv } from '../support/git-env.js'
import { startTestGitLab } from '../support/gitlab.js'

const execFileAsync = promisify(execFile)

const { world, gitlab } = await startTestGitLab(t, 'gitlab-test')

const { developer, guest, outsider, maintainer } = world.users
const sha = world.commits.demo

interface Answer {
  status: number
  // biome-ignore lint/suspicious/noExplicitAny: JSON of many shapes, checked by the assertions
  body: any
  headers: Headers
}

async function call(url: string, init: RequestInit & { token?: string } = {}): Promise<Answer> {
  const headers = new Headers(init.headers)
  if (init.token) headers.set('authorization', `Bearer ${init.token}`)
  const res = await fetch(url, { ...init, headers })
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // plain text
  }
  return { status: res.status, body, headers: res.headers }
}

const api = (p: string, token?: string) => call(`${gitlab.url}/api/v4${p}`, { token })
const demo = encodeURIComponent('demo-group/demo-project')
const notebook = encodeURIComponent('science/lab/public-notebook')

t.test('current user and token failures', async (t) => {
  const me = await api('/user', developer.token)
  t.equal(me.status, 200)
  t.match(me.body, { id: developer.id, username: 'developer', email: developer.email })

  const viaHeader = await call(`${gitlab.url}/api/v4/user`, {
    headers: { 'private-token': maintainer.token },
  })
  t.equal(viaHeader.body.username, 'maintainer', 'PRIVATE-TOKEN header')

  t.same((await api('/user')).body, { message: '401 Unauthorized' }, 'anonymous /user')
  const unknown = await api(`/projects/${demo}`, 'glpat-unknown')
  t.equal(unknown.status, 401)
  t.same(unknown.body, { message: '401 Unauthorized' })

  const revoked = await api('/projects/202', world.revokedToken)
  t.equal(revoked.status, 401, 'revoked token is 401 even for a public project')
  t.equal(revoked.body.error, 'invalid_token')
  t.match(revoked.body.error_description, /revoked/)
  t.match(revoked.headers.get('www-authenticate'), /^Bearer .*error="invalid_token"/)
})

t.test('projects by id and by encoded path', async (t) => {
  const byPath = await api(`/projects/${demo}`, developer.token)
  t.equal(byPath.status, 200)
  t.match(byPath.body, {
    id: 101,
    path: 'demo-project',
    path_with_namespace: 'demo-group/demo-project',
    default_branch: 'master',
    visibility: 'private',
    http_url_to_repo: `${gitlab.url}/demo-group/demo-project.git`,
    web_url: `${gitlab.url}/demo-group/demo-project`,
    namespace: { id: 7, path: 'demo-group', full_path: 'demo-group', kind: 'group' },
    container_registry_image_prefix: `${gitlab.registryHost}/demo-group/demo-project`,
    permissions: { project_access: { access_level: 30 }, group_access: null },
  })
  const byId = await api('/projects/101', developer.token)
  t.same(byId.body, byPath.body, 'numeric id gives the same project')

  const nested = await api(`/projects/${notebook}`, developer.token)
  t.match(nested.body, {
    id: 202,
    default_branch: 'main',
    visibility: 'public',
    namespace: { full_path: 'science/lab' },
    permissions: { project_access: null, group_access: { access_level: 30 } },
  })

  const unencoded = await api('/projects/demo-group/demo-project', developer.token)
  t.equal(unencoded.status, 404)
  t.same(unencoded.body, { message: '404 Not Found' }, 'an unencoded / misses every route')

  t.match((await api(`/projects/${demo}`, guest.token)).body.permissions, {
    project_access: { access_level: 10 },
    group_access: null,
  })
  t.match((await api(`/projects/${demo}`, maintainer.token)).body.permissions, {
    project_access: null,
    group_access: { access_level: 40 },
  })
  t.same((await api(`/projects/${notebook}`, outsider.token)).body.permissions, {
    project_access: null,
    group_access: null,
  })

  for (const [who, token] of [
    ['outsider', outsider.token],
    ['anonymous', undefined],
  ] as const) {
    const hidden = await api(`/projects/${demo}`, token)
    t.equal(hidden.status, 404, `${who} cannot see the private project`)
    t.same(hidden.body, { message: '404 Project Not Found' })
  }
  const anonymousPublic = await api(`/projects/${notebook}`)
  t.equal(anonymousPublic.status, 200, 'anonymous sees the public project')
  t.notOk('permissions' in anonymousPublic.body, 'no permissions without a user')
  t.same((await api('/projects/999', developer.token)).body, { message: '404 Project Not Found' })
})

t.test('branches and commits come from the repository', async (t) => {
  const master = await api(`/projects/${demo}/repository/branches/master`, developer.token)
  t.equal(master.status, 200)
  t.match(master.body, { name: 'master', default: true, commit: { id: sha.masterSecond } })
  const feature = await api('/projects/101/repository/branches/feature', developer.token)
  t.match(feature.body, {
    name: 'feature',
    default: false,
    commit: { id: sha.feature, parent_ids: [sha.masterFirst] },
  })

  const missing = await api(
    `/projects/${demo}/repository/branches/${encodeURIComponent('no/such')}`,
    developer.token,
  )
  t.equal(missing.status, 404)
  t.same(missing.body, { message: '404 Branch Not Found' })
  t.equal((await api(`/projects/${demo}/repository/branches/a..b`, developer.token)).status, 400)

  const full = await api(`/projects/${demo}/repository/commits/${sha.masterFirst}`, developer.token)
  t.equal(full.status, 200)
  t.match(full.body, {
    id: sha.masterFirst,
    short_id: sha.masterFirst.slice(0, 11),
    title: 'Initial project',
    author_name: 'Renku Tester',
    parent_ids: [],
  })
  const short = await api(
    `/projects/${demo}/repository/commits/${sha.masterFirst.slice(0, 7)}`,
    developer.token,
  )
  t.equal(short.body.id, sha.masterFirst, 'abbreviated sha resolves')
  const byBranch = await api(`/projects/${demo}/repository/commits/master`, developer.token)
  t.equal(byBranch.body.id, sha.masterSecond, 'a branch name resolves to its head')

  const unknown = await api(`/projects/${demo}/repository/commits/${'0'.repeat(40)}`, developer.token)
  t.equal(unknown.status, 404)
  t.same(unknown.body, { message: '404 Commit Not Found' })

  const asGuest = await api(`/projects/${demo}/repository/commits/${sha.masterFirst}`, guest.token)
  t.equal(asGuest.status, 403, 'a Guest may not read the code of a private project')
  t.same(asGuest.body, { message: '403 Forbidden' })
  t.equal((await api(`/projects/${demo}/repository/branches/master`, guest.token)).status, 403)
  t.equal((await api(`/projects/${demo}/repository/commits/master`, outsider.token)).status, 404)

  const publicCommit = await api(`/projects/${notebook}/repository/commits/${world.commits.notebook.main}`)
  t.equal(publicCommit.status, 200, 'anonymous reads public code')
})

t.test('registry API: repositories and tags', async (t) => {
  const repos = await api(`/projects/${demo}/registry/repositories`, developer.token)
  t.equal(repos.status, 200)
  t.equal(repos.body.length, 1)
  const root = repos.body[0]
  t.match(root, { name: '', path: 'demo-group/demo-project', project_id: 101 })
  t.equal(root.location, `${gitlab.registryHost}/demo-group/demo-project`)

  const tag = sha.masterFirst.slice(0, 7)
  const found = await api(`/projects/${demo}/registry/repositories/${root.id}/tags/${tag}`, developer.token)
  t.equal(found.status, 200)
  t.match(found.body, { name: tag, path: `demo-group/demo-project:${tag}`, digest: /^sha256:/ })

  const none = await api(
    `/projects/${demo}/registry/repositories/${root.id}/tags/${sha.masterSecond.slice(0, 7)}`,
    developer.token,
  )
  t.equal(none.status, 404, 'a commit with no image')
  t.same(none.body, { message: '404 Tag Not Found' })

  t.same((await api(`/projects/${demo}/registry/repositories/1/tags/${tag}`, developer.token)).body, {
    message: '404 Not found',
  })
  t.equal((await api(`/projects/${demo}/registry/repositories`, guest.token)).status, 403)
  t.equal((await api(`/projects/${demo}/registry/repositories`, outsider.token)).status, 404)
})

t.test('registry: token flow and manifests', async (t) => {
  const registry = `http://${gitlab.registryHost}`
  const name = 'demo-group/demo-project'
  const tag = sha.masterFirst.slice(0, 7)

  const base = await call(`${registry}/v2/`)
  t.equal(base.status, 401)
  t.equal(
    base.headers.get('www-authenticate'),
    `Bearer realm="${gitlab.url}/jwt/auth",service="container_registry"`,
  )

  const noToken = await call(`${registry}/v2/${name}/manifests/${tag}`)
  t.equal(noToken.status, 401)
  const challenge = noToken.headers.get('www-authenticate') ?? ''
  t.equal(
    challenge,
    `Bearer realm="${gitlab.url}/jwt/auth",service="container_registry",scope="repository:${name}:pull"`,
  )
  t.same(noToken.body, {
    errors: [
      {
        code: 'UNAUTHORIZED',
        message: 'authentication required',
        detail: [{ Type: 'repository', Name: name, Action: 'pull' }],
      },
    ],
  })

  const tokenFor = async (gitlabToken: string | undefined, repo = name) => {
    const headers: Record<string, string> = {}
    if (gitlabToken)
      headers.authorization = `Basic ${Buffer.from(`oauth2:${gitlabToken}`).toString('base64')}`
    const res = await call(
      `${gitlab.url}/jwt/auth?service=container_registry&scope=${encodeURIComponent(`repository:${repo}:pull`)}`,
      { headers },
    )
    t.equal(res.status, 200, 'token endpoint answers')
    return res.body.token as string
  }

  const dev = await tokenFor(developer.token)
  const manifest = await call(`${registry}/v2/${name}/manifests/${tag}`, { token: dev })
  t.equal(manifest.status, 200)
  t.equal(manifest.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json')
  t.match(manifest.headers.get('docker-content-digest'), /^sha256:[0-9a-f]{64}$/)
  t.equal(manifest.body.schemaVersion, 2)
  const head = await call(`${registry}/v2/${name}/manifests/${tag}`, { token: dev, method: 'HEAD' })
  t.equal(head.status, 200, 'HEAD works too')

  const missing = await call(`${registry}/v2/${name}/manifests/${sha.masterSecond.slice(0, 7)}`, {
    token: dev,
  })
  t.equal(missing.status, 404)
  t.equal(missing.body.errors[0].code, 'MANIFEST_UNKNOWN')

  for (const [who, gitlabToken] of [
    ['anonymous', undefined],
    ['outsider', outsider.token],
    ['guest', guest.token],
  ] as const) {
    const token = await tokenFor(gitlabToken)
    const denied = await call(`${registry}/v2/${name}/manifests/${tag}`, { token })
    t.equal(denied.status, 401, `${who} may not pull the private image`)
    t.match(denied.headers.get('www-authenticate'), /error="insufficient_scope"/)
    t.equal(denied.body.errors[0].code, 'UNAUTHORIZED')
  }

  const publicName = 'science/lab/public-notebook'
  const anonymous = await tokenFor(undefined, publicName)
  const publicManifest = await call(
    `${registry}/v2/${publicName}/manifests/${world.commits.notebook.main.slice(0, 7)}`,
    { token: anonymous },
  )
  t.equal(publicManifest.status, 200, 'anonymous pulls a public image')

  const badCreds = await call(`${gitlab.url}/jwt/auth?service=container_registry`, {
    headers: { authorization: `Basic ${Buffer.from('oauth2:nope').toString('base64')}` },
  })
  t.equal(badCreds.status, 401)

  world.images.push(`${name}:${sha.masterSecond.slice(0, 7)}`)
  t.teardown(() => {
    world.images.pop()
  })
  const pushed = await call(`${registry}/v2/${name}/manifests/${sha.masterSecond.slice(0, 7)}`, {
    token: dev,
  })
  t.equal(pushed.status, 200, 'the world is read live')
})

t.test('git clone over smart HTTP', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'gitlab-clone-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const env = isolatedGitEnv
  const clone = (url: string, into: string) =>
    execFileAsync('git', ['clone', '-q', url, path.join(work, into)], { env }).then(
      () => true,
      () => false,
    )
  const withToken = (token: string, repo: string) =>
    `${gitlab.url.replace('://', `://oauth2:${token}@`)}/${repo}.git`

  t.ok(
    await clone(withToken(developer.token, 'demo-group/demo-project'), 'dev'),
    'developer clones the private repo',
  )
  const { stdout } = await execFileAsync('git', ['-C', path.join(work, 'dev'), 'rev-parse', 'HEAD'], { env })
  t.equal(stdout.trim(), sha.masterSecond)
  t.ok(await clone(withToken(maintainer.token, 'demo-group/demo-project'), 'any-user'), 'maintainer too')

  t.notOk(await clone(`${gitlab.url}/demo-group/demo-project.git`, 'anon'), 'no token, no private clone')
  t.notOk(
    await clone(withToken(outsider.token, 'demo-group/demo-project'), 'outsider'),
    'outsider cannot clone',
  )
  t.notOk(await clone(withToken(guest.token, 'demo-group/demo-project'), 'guest'), 'guest cannot clone')
  // git only sends URL credentials after a 401; a header (as clone-repo.sh sends it) goes up front.
  const bogus = `Authorization: Basic ${Buffer.from('oauth2:glpat-bogus').toString('base64')}`
  const refused = await execFileAsync(
    'git',
    ['clone', '-q', `${gitlab.url}/science/lab/public-notebook.git`, path.join(work, 'bogus')],
    {
      env: { ...env, GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: bogus },
    },
  ).then(
    () => false,
    () => true,
  )
  t.ok(refused, 'a bad token is refused, even for a public project')
  t.ok(
    await clone(`${gitlab.url}/science/lab/public-notebook.git`, 'public'),
    'anonymous clones a public repo',
  )
})

t.test('request log and faults', async (t) => {
  const before = gitlab.requests.length
  gitlab.faults.push({ path: /^\/api\/v4\/projects\/101$/, status: 502 })
  t.teardown(() => {
    gitlab.faults.length = 0
  })
  t.equal((await api('/projects/101', developer.token)).status, 502)
  t.equal((await api(`/projects/${demo}`, developer.token)).status, 200, 'other paths unaffected')
  const logged = gitlab.requests.slice(before)
  t.match(logged, [
    { server: 'gitlab', method: 'GET', path: '/api/v4/projects/101', status: 502 },
    { server: 'gitlab', method: 'GET', path: `/api/v4/projects/${demo}`, status: 200 },
  ])
})

t.test('OAuth tokens: scopes, expiry, token info and the refresh grant', async (t) => {
  const app = world.oauthApplication
  const refresh = (refreshToken: string, secret = app.secret) =>
    call(`${gitlab.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: refreshToken,
        client_id: app.uid,
        client_secret: secret,
      }).toString(),
    })
  const info = (token: string) => call(`${gitlab.url}/oauth/token/info`, { token })

  const pair = gitlab.issueToken('developer', { scopes: ['api', 'write_repository'] })
  t.equal((await api('/user', pair.accessToken)).body.username, 'developer', 'an OAuth token authenticates')
  const described = await info(pair.accessToken)
  t.equal(described.status, 200)
  t.match(described.body, {
    resource_owner_id: developer.id,
    scope: ['api', 'write_repository'],
    application: { uid: app.uid },
    created_at: pair.createdAt,
  })
  t.ok(described.body.expires_in > 7000 && described.body.expires_in <= 7200, 'expires in 2 hours')
  t.equal((await info('nope')).status, 401, 'token info of an unknown token')
  t.equal((await info('nope')).body.error, 'invalid_token')

  gitlab.expireToken(pair.accessToken)
  const expired = await api('/user', pair.accessToken)
  t.equal(expired.status, 401, 'an expired token is refused')
  t.same(expired.body, {
    error: 'invalid_token',
    error_description: 'Token is expired. You can either do re-authorization or token refresh.',
  })
  t.match(expired.headers.get('www-authenticate'), /error="invalid_token"/)
  t.equal((await info(pair.accessToken)).status, 401)

  t.equal((await refresh(pair.refreshToken, 'wrong-secret')).status, 401, 'client secret checked')
  t.equal((await refresh(pair.refreshToken, 'wrong-secret')).body.error, 'invalid_client')
  const renewed = await refresh(pair.refreshToken)
  t.equal(renewed.status, 200, 'the refresh grant')
  t.match(renewed.body, { token_type: 'Bearer', expires_in: 7200, scope: 'api write_repository' })
  t.not(renewed.body.refresh_token, pair.refreshToken, 'a new refresh token')
  t.equal((await api('/user', renewed.body.access_token)).body.username, 'developer', 'the new token works')
  const reused = await refresh(pair.refreshToken)
  t.equal(reused.status, 400, 'a refresh token works once')
  t.equal(reused.body.error, 'invalid_grant')

  const short = gitlab.issueToken('developer', { expiresIn: 0 })
  t.equal((await api('/user', short.accessToken)).status, 401, 'a token past its lifetime is expired')
  const fresh = await refresh(short.refreshToken)
  t.equal(fresh.status, 200)
  t.equal((await api('/user', short.accessToken)).status, 401, 'the old access token is dead after a refresh')

  const readUser = gitlab.issueToken('developer', { scopes: ['read_user'] })
  t.equal((await api('/user', readUser.accessToken)).status, 200, 'read_user reads /user')
  const scoped = await api(`/projects/${demo}`, readUser.accessToken)
  t.equal(scoped.status, 403, 'but not projects')
  t.equal(scoped.body.error, 'insufficient_scope')
})

t.test('git push over smart HTTP', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'gitlab-push-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const git = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    execFileAsync('git', ['-C', work, ...args], { env }).then(
      () => ({ ok: true, err: '' }),
      (err: { stderr?: string }) => ({ ok: false, err: err.stderr ?? '' }),
    )
  const repoUrl = `${gitlab.url}/demo-group/demo-project.git`
  await execFileAsync('git', ['init', '-q', work], { env: isolatedGitEnv })
  await execFileAsync('git', ['-C', work, 'commit', '-q', '--allow-empty', '-m', 'pushed'], {
    env: isolatedGitEnv,
  })
  const branchSha = async (branch: string) =>
    (await api(`/projects/101/repository/branches/${branch}`, maintainer.token)).body?.commit?.id
  const { stdout } = await execFileAsync('git', ['-C', work, 'rev-parse', 'HEAD'], { env: isolatedGitEnv })
  const pushed = stdout.trim()

  // Unrelated history is fine for a new branch.
  const push = (env: NodeJS.ProcessEnv, branch: string) =>
    git(env, 'push', '-q', repoUrl, `HEAD:refs/heads/${branch}`)
  t.ok((await push(gitEnvWithToken(developer.token), 'dev-branch')).ok, 'a developer pushes a new branch')
  t.equal(await branchSha('dev-branch'), pushed, 'the branch is in the repository')

  const anonymous = await push(isolatedGitEnv, 'anon')
  t.notOk(anonymous.ok, 'no token: refused')
  t.match(anonymous.err, /Authentication failed|could not read Username/)
  const bad = await push(gitEnvWithToken('glpat-bogus'), 'bogus')
  t.notOk(bad.ok)
  t.match(bad.err, /Authentication failed|401|could not read Username/, 'a bad token: 401')
  const expiring = gitlab.issueToken('developer', { scopes: ['write_repository'] })
  gitlab.expireToken(expiring.accessToken)
  t.notOk((await push(gitEnvWithToken(expiring.accessToken), 'expired')).ok, 'an expired token: 401')
  const readOnly = gitlab.issueToken('developer', { scopes: ['read_repository'] })
  const scopeless = await push(gitEnvWithToken(readOnly.accessToken), 'read-only')
  t.notOk(scopeless.ok, 'read_repository cannot push')
  t.match(scopeless.err, /403/)
  const guestPush = await push(gitEnvWithToken(guest.token), 'guest')
  t.notOk(guestPush.ok, 'a guest cannot push')
  t.equal(await branchSha('read-only'), undefined, 'nothing was pushed by the refused')
  const writer = gitlab.issueToken('developer', { scopes: ['write_repository'] })
  t.ok((await push(gitEnvWithToken(writer.accessToken), 'writer')).ok, 'write_repository pushes')
  t.ok(
    (await git(gitEnvWithToken(writer.accessToken), 'push', '-q', repoUrl, '--delete', 'writer')).ok,
    'and deletes',
  )
  t.equal(await branchSha('writer'), undefined, 'the branch is gone')
  const log = gitlab.requests.filter(
    (r) => r.query.includes('git-receive-pack') || r.path.endsWith('git-receive-pack'),
  )
  t.ok(log.some((r) => r.status === 401) && log.some((r) => r.status === 403), 'answered 401 and 403')
  await git(gitEnvWithToken(developer.token), 'push', '-q', repoUrl, '--delete', 'dev-branch')
})

t.test('branch lists: search, pages; deleting branches', async (t) => {
  const project = world.projects.demo
  const heads = [sha.masterFirst, sha.masterSecond, sha.feature]
  const seeded: string[] = []
  for (const [i, head] of heads.entries()) {
    seeded.push(
      await seedAutosave(project, {
        user: 'developer',
        branch: 'master',
        commitSha: sha.masterFirst,
        head,
        files: { 'notes.md': `draft ${i}\n` },
        date: `2026-02-0${i + 1}T10:00:00+02:00`,
      }),
    )
  }
  const unchanged = `renku/autosave/developer/master/${sha.masterFirst.slice(0, 7)}/${sha.masterFirst.slice(0, 7)}`
  t.equal(seeded[0], unchanged, 'named after the launch and the saved HEAD')
  seeded.sort()
  t.same(await autosaveBranches(project), seeded, 'real refs in the bare repository')
  t.teardown(async () => {
    for (const name of await autosaveBranches(project)) {
      await execFileAsync('git', ['update-ref', '-d', `refs/heads/${name}`], {
        env: { ...process.env, GIT_DIR: project.repoDir },
      })
    }
  })

  const all = await api('/projects/101/repository/branches', developer.token)
  t.equal(all.status, 200)
  t.same(
    all.body.map((b: { name: string }) => b.name),
    ['feature', 'master', ...seeded],
    'every branch, by name',
  )
  t.equal(all.headers.get('x-total'), '5')
  t.equal(all.headers.get('x-next-page'), '', 'one page')
  t.match(
    all.body.find((b: { name: string }) => b.name === unchanged),
    {
      default: false,
      protected: false,
      commit: { parent_ids: [sha.masterFirst], committed_date: '2026-02-01T10:00:00+02:00' },
    },
  )

  const search = (term: string, extra = '') =>
    api(`/projects/101/repository/branches?search=${encodeURIComponent(term)}${extra}`, developer.token)
  t.same(
    (await search('^renku/autosave/developer/')).body.map((b: { name: string }) => b.name),
    seeded,
    '^ anchors at the start',
  )
  t.same((await search('^autosave')).body, [], 'not a prefix')
  t.same(
    (await search('autosave/DEVELOPER')).body.map((b: { name: string }) => b.name),
    seeded,
    'contains, ignoring case',
  )
  t.same(
    (await search(`${sha.masterFirst.slice(0, 7)}$`)).body.map((b: { name: string }) => b.name),
    [unchanged],
    '$ anchors at the end',
  )
  t.same((await search('^renku/autosave/dev/')).body, [], 'another user prefix')

  const page1 = await search('^renku/', '&per_page=2')
  t.equal(page1.body.length, 2)
  t.equal(page1.headers.get('x-total'), '3')
  t.equal(page1.headers.get('x-total-pages'), '2')
  t.equal(page1.headers.get('x-next-page'), '2')
  const page2 = await search('^renku/', '&per_page=2&page=2')
  t.same(
    page2.body.map((b: { name: string }) => b.name),
    [seeded[2]],
  )
  t.equal(page2.headers.get('x-next-page'), '', 'the last page has no next')
  t.equal((await search('^renku/', '&per_page=500')).headers.get('x-per-page'), '100', 'per_page caps at 100')
  t.equal((await api('/projects/101/repository/branches', outsider.token)).status, 404, 'invisible project')
  t.equal(
    (await api('/projects/101/repository/branches', guest.token)).status,
    403,
    'a guest cannot read code',
  )

  const del = (branch: string, token?: string) =>
    call(`${gitlab.url}/api/v4/projects/101/repository/branches/${encodeURIComponent(branch)}`, {
      method: 'DELETE',
      token,
    })
  const readApi = gitlab.issueToken('developer', { scopes: ['read_api', 'write_repository'] })
  t.same((await del(seeded[0] as string, readApi.accessToken)).body, {
    error: 'insufficient_scope',
    error_description: 'The request requires higher privileges than provided by the access token.',
    scope: 'api',
  })
  t.equal((await del(seeded[0] as string, guest.token)).status, 403, 'a guest may not delete')
  t.equal((await del(seeded[0] as string, outsider.token)).status, 404, 'an outsider sees no project')
  t.equal((await del(seeded[0] as string)).status, 401, 'anonymous')
  const master = await del('master', maintainer.token)
  t.equal(master.status, 400, 'never the default branch')
  t.same(await autosaveBranches(project), seeded, 'nothing deleted by the refused')

  const deleted = await del(seeded[0] as string, developer.token)
  t.equal(deleted.status, 204)
  t.equal(deleted.body, '', 'no content')
  t.same(await autosaveBranches(project), seeded.slice(1), 'the ref is gone')
  const again = await del(seeded[0] as string, developer.token)
  t.equal(again.status, 404)
  t.same(again.body, { message: '404 Branch Not Found' })
  const raw = await call(`${gitlab.url}/api/v4/projects/101/repository/branches/${seeded[1]}`, {
    method: 'DELETE',
    token: developer.token,
  })
  t.equal(raw.status, 404, 'an unencoded / misses the route')
  t.same(await autosaveBranches(project), seeded.slice(1))
})

t.test('personal access tokens tell their scopes', async (t) => {
  const self = await api('/personal_access_tokens/self', developer.token)
  t.equal(self.status, 200)
  t.match(self.body, { scopes: ['api'], active: true, user_id: developer.id })
  const oauth = gitlab.issueToken('developer', { scopes: ['read_api'] })
  t.equal((await api('/personal_access_tokens/self', oauth.accessToken)).status, 404, 'not for OAuth tokens')
  t.equal((await api('/personal_access_tokens/self', 'glpat-unknown')).status, 401)
})
