import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startHub } from '../../dev/hub.js'
import { startTestGitLab } from '../support/gitlab.js'
import { recordingGit } from '../support/recording-git.js'
import { BUNDLED_DEFAULTS } from '../support/server-options.js'

const execFileAsync = promisify(execFile)
const CLONE_SCRIPT = path.resolve(import.meta.dirname, '..', '..', 'chart', 'files', 'clone-repo.sh')

const { dir, world, gitlab } = await startTestGitLab(t, 'local-spawner')

const { developer } = world.users
const sha = world.commits.demo
const demoRepo = `${gitlab.url}/demo-group/demo-project.git`

const gitIn = async (cwd: string, ...args: string[]) =>
  (
    await execFileAsync('git', ['-C', cwd, ...args], {
      env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null' },
    })
  ).stdout.trim()

t.test('clone-repo.sh', async (t) => {
  // A git on PATH that records its arguments: the token must never be one of them.
  const { bin, argvLog } = await recordingGit(dir)

  const run = (env: Record<string, string>) =>
    execFileAsync('/bin/sh', [CLONE_SCRIPT], {
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, GIT_CONFIG_GLOBAL: '/dev/null', ...env },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, out: stdout + stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: err.code ?? -1,
        out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    )
  const target = path.join(dir, 'clone', 'feature')
  const inputs = {
    GIT_REPOSITORY_URL: demoRepo,
    GIT_COMMIT_SHA: sha.feature,
    GIT_BRANCH: 'feature',
    GIT_TARGET_DIR: target,
    GIT_LFS_AUTO_FETCH: 'true',
    GIT_ACCESS_TOKEN: developer.token,
  }

  const first = await run(inputs)
  t.equal(first.code, 0, 'clones')
  t.equal(await gitIn(target, 'rev-parse', 'HEAD'), sha.feature)
  t.equal(await gitIn(target, 'rev-parse', '--abbrev-ref', 'HEAD'), 'feature')
  t.equal(await gitIn(target, 'remote', 'get-url', 'origin'), demoRepo, 'origin has no credentials')
  t.match(first.out, /LFS/, 'says LFS is unavailable and carries on')
  t.notMatch(await readFile(path.join(target, '.git', 'config'), 'utf8'), developer.token)
  t.notMatch(first.out, developer.token)

  const again = await run(inputs)
  t.equal(again.code, 0, 'idempotent')
  t.match(again.out, /already at/)

  const bad = await run({
    ...inputs,
    GIT_TARGET_DIR: path.join(dir, 'clone', 'bad'),
    GIT_COMMIT_SHA: '0'.repeat(40),
  })
  t.not(bad.code, 0)
  t.match(bad.out, /clone-repo: error: commit 0{40} not found/)
  const noBranch = await run({ ...inputs, GIT_TARGET_DIR: path.join(dir, 'clone', 'nb'), GIT_BRANCH: 'nope' })
  t.match(noBranch.out, /branch 'nope' not found/)
  const noToken = await run({
    ...inputs,
    GIT_TARGET_DIR: path.join(dir, 'clone', 'anon'),
    GIT_ACCESS_TOKEN: '',
  })
  t.not(noToken.code, 0, 'a private project needs the token')
  t.match(noToken.out, /cannot read .* \(not found or access denied\)/)
  const creds = await run({ ...inputs, GIT_REPOSITORY_URL: demoRepo.replace('://', '://oauth2:x@') })
  t.match(creds.out, /must not contain credentials/)
  const other = await run({ ...inputs, GIT_REPOSITORY_URL: `${gitlab.url}/science/lab/public-notebook.git` })
  t.match(other.out, /already holds a different repository/)

  t.notMatch(await readFile(argvLog, 'utf8'), developer.token, 'the token never reached a command line')
})

t.test('a real hub with the local spawner', async (t) => {
  const tokensFile = path.join(dir, 'gitlab-tokens.json')
  await writeFile(tokensFile, JSON.stringify({ carol: world.users.maintainer.token }))
  const hub = await startHub({
    serviceUrl: 'http://127.0.0.1:9',
    serviceToken: 'notebooks-service-token-for-tests',
    env: { JHUB_GITLAB_TOKENS: tokensFile },
  })
  t.teardown(() => hub.stop())

  const alice = await hub.createUser('alice', developer.token)
  const bob = await hub.createUser('bob') // no GitLab token at all

  const options = {
    namespace: 'demo-group',
    project: 'demo-project',
    branch: 'master',
    commit_sha: sha.masterFirst,
    project_id: 101,
    notebook: 'notebooks/analysis.ipynb',
    image: `${gitlab.registryHost}/demo-group/demo-project:${sha.masterFirst.slice(0, 7)}`,
    default_image_used: false,
    repository: demoRepo,
    server_options: BUNDLED_DEFAULTS,
  }
  const publicOptions = {
    ...options,
    namespace: 'science/lab',
    project: 'public-notebook',
    branch: 'main',
    commit_sha: world.commits.notebook.main,
    project_id: 202,
    notebook: null,
    image: 'renku/singleuser:latest',
    default_image_used: true,
    repository: `${gitlab.url}/science/lab/public-notebook.git`,
  }

  const serverOf = async (user: string, name: string) => {
    const res = await hub.admin('GET', `/users/${user}`)
    return (
      res.body as {
        servers: Record<string, { ready: boolean; pending: string | null; state: { pid?: number } }>
      }
    ).servers[name]
  }
  const untilReady = async (user: string, name: string) => {
    for (let i = 0; i < 300; i++) {
      const server = await serverOf(user, name)
      if (server?.ready) return server
      if (server && !server.pending) throw new Error(`${user}/${name} stopped while starting`)
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`${user}/${name} never became ready`)
  }

  // Both spawns at once: the private project with alice's token, the public one without any.
  const [started, startedPublic, failed] = await Promise.all([
    hub.admin('POST', '/users/alice/servers/demo', options),
    hub.admin('POST', '/users/bob/servers/pub', publicOptions),
    hub.admin('POST', '/users/alice/servers/broken', { ...options, commit_sha: '0'.repeat(40) }),
  ])
  t.ok([201, 202].includes(started.status), `spawn answered ${started.status}`)
  t.ok([201, 202].includes(startedPublic.status), `public spawn answered ${startedPublic.status}`)
  const server = await untilReady('alice', 'demo')
  await untilReady('bob', 'pub')

  const status = await fetch(`${hub.publicUrl}/user/alice/demo/api/status`, {
    headers: { authorization: `token ${alice.token}` },
  })
  t.equal(status.status, 200, 'the notebook server answers through the proxy')
  await status.arrayBuffer()
  const bobStatus = await fetch(`${hub.publicUrl}/user/bob/pub/api/status`, {
    headers: { authorization: `token ${bob.token}` },
  })
  t.equal(bobStatus.status, 200)
  await bobStatus.arrayBuffer()

  const workTree = path.join(hub.runDir, 'work', 'alice', 'demo', 'demo-project')
  t.equal(await gitIn(workTree, 'rev-parse', 'HEAD'), sha.masterFirst, 'HEAD is the requested commit')
  t.equal(await gitIn(workTree, 'rev-parse', '--abbrev-ref', 'HEAD'), 'master')
  t.notMatch(await readFile(path.join(workTree, '.git', 'config'), 'utf8'), developer.token)
  const publicTree = path.join(hub.runDir, 'work', 'bob', 'pub', 'public-notebook')
  t.equal(await gitIn(publicTree, 'rev-parse', 'HEAD'), world.commits.notebook.main)

  t.same(await hub.spawnedOptions('alice', 'demo'), options, 'the spawner got the user_options as posted')
  t.equal(await hub.spawnedOptions('alice', 'nosuch'), null)

  const log = await readFile(hub.serverLogPath('alice', 'demo'), 'utf8')
  t.match(log, /checked out master at/, 'clone output is in the log')
  t.match(log, /SingleUserNotebookApp/, 'server output is in the log')
  t.notMatch(log, developer.token)
  if (server.state.pid) {
    const environ = await readFile(`/proc/${server.state.pid}/environ`)
    t.notOk(environ.includes(developer.token), 'the token is not in the server environment')
    t.ok(environ.includes(`JHUB_MARKER=${hub.runDir}`), 'servers carry the marker')
  }

  t.equal(failed.status, 500, 'a commit that does not exist fails the spawn')
  t.match((failed.body as { message: string }).message, /commit 0{40} not found/)
  t.match(await readFile(hub.serverLogPath('alice', 'broken'), 'utf8'), /spawn failed: .*not found/)

  const removals = [
    ['alice', 'demo'],
    ['alice', 'broken'],
    ['bob', 'pub'],
  ] as const
  const removed = await Promise.all(
    removals.map(([user, name]) => hub.admin('DELETE', `/users/${user}/servers/${name}`, { remove: true })),
  )
  t.same(
    removed.map((r) => r.status),
    [204, 204, 204],
    'stopped and removed',
  )
  t.match(
    await readFile(hub.serverLogPath('alice', 'demo'), 'utf8'),
    /autosave: nothing to save \(stopped; [\d.]+ s\)/,
    'the stop looked for unsaved work',
  )
  t.notOk(existsSync(workTree), 'the work directory goes with the server, as an emptyDir does')
  // Password logins: the GitLab token comes from JHUB_GITLAB_TOKENS, else what was stored stays.
  const login = async (username: string) => {
    const res = await fetch(`${hub.publicUrl}/hub/login`, {
      method: 'POST',
      body: new URLSearchParams({ username, password: 'password' }),
      redirect: 'manual',
    })
    await res.arrayBuffer()
    return res.status
  }
  const authState = async (user: string) =>
    ((await hub.admin('GET', `/users/${user}`)).body as { auth_state: unknown }).auth_state
  t.equal(await login('carol'), 302, 'carol logs in')
  t.same(await authState('carol'), { access_token: world.users.maintainer.token }, 'token from the file')
  t.equal(await login('alice'), 302, 'alice logs in')
  t.same(await authState('alice'), { access_token: developer.token }, 'stored token kept')

  const after = await hub.admin('GET', '/users/alice')
  t.same((after.body as { servers: object }).servers, {}, 'no servers left')
})
