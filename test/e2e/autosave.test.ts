/**
 * Work survives its server, over the real hub and real notebook servers: a stop (through the
 * service, or at the hub as the culler makes it) pushes the unsaved work to an autosave branch
 * in the GitLab stand-in's repository, and a launch with `autosave` gives it back.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { HubUser } from '../../dev/hub.js'
import { eventually, startStack } from '../../dev/stack.js'
import { serverName } from '../../lib/servers/server-object.js'
import type { ServerObject } from '../../schemas/servers.js'
import { launchRunning, stopGone } from '../support/servers.js'

const exec = promisify(execFile)
// Polling often: a server whose process ends is noticed (and its work saved) within seconds.
const stack = await startStack({ hubEnv: { JHUB_POLL_INTERVAL: '1' } })
t.teardown(() => stack.stop())

const { world, users, hub, gitlab } = stack
const { masterFirst, masterSecond, feature } = world.commits.demo
const demo = { namespace: 'demo-group', project: 'demo-project' }
const bare = world.projects.demo.repoDir
const workRoot = (user: string, server: string) => path.join(hub.runDir, 'work', user, server)
const workTree = (user: string, server: string) => path.join(workRoot(user, server), 'demo-project')

const bareGit = async (...args: string[]) => (await exec('git', ['--git-dir', bare, ...args])).stdout.trim()
const autosaves = async () =>
  (await bareGit('for-each-ref', '--format=%(refname:short)', 'refs/heads/renku/autosave/'))
    .split('\n')
    .filter(Boolean)
const deleteBranch = (name: string) => bareGit('update-ref', '-d', `refs/heads/${name}`)
const workGit = async (dir: string, ...args: string[]) =>
  (
    await exec('git', ['-C', dir, '-c', 'user.name=Dee Veloper', '-c', 'user.email=dee@example.com', ...args])
  ).stdout.trim()

const launch = (user: HubUser, body: Record<string, unknown>) =>
  launchRunning(stack.as(user), { ...demo, ...body })

/** Saves a file through the notebook server's contents API, as the browser's editor does. */
async function writeFile(user: HubUser, server: ServerObject, file: string, content: string) {
  const res = await fetch(`${server.url}api/contents/${file}`, {
    method: 'PUT',
    headers: { authorization: `token ${user.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'file', format: 'text', content }),
  })
  await res.arrayBuffer()
  if (![200, 201].includes(res.status)) throw new Error(`saving ${file} answered ${res.status}`)
}

/** Stops through the service and waits until the server is gone; returns the seconds it took. */
async function stopThroughService(user: HubUser, name: string): Promise<number> {
  const started = Date.now()
  await stopGone(stack.as(user), name)
  return (Date.now() - started) / 1000
}

const serverLog = (user: string, server: string) => readFile(hub.serverLogPath(user, server), 'utf8')
const timings: Record<string, number> = {}
t.teardown(() => {
  t.comment(`stop with a save: ${JSON.stringify(timings)}`)
})

let saved: { name: string; server: string; head: string } | undefined

t.test('a stop through the service saves the work to an autosave branch', async (t) => {
  const server = await launch(users.developer, { commit_sha: masterFirst })
  const dir = workTree('developer', server.name)
  await writeFile(users.developer, server, 'findings.md', '# Findings\n\nWritten in the notebook.\n')
  await writeFile(users.developer, server, 'README.md', '# Demo project\n\nChanged in the notebook.\n')
  await workGit(dir, 'rm', '-q', 'requirements.txt')
  await workGit(dir, 'commit', '-q', '-m', 'Drop requirements')
  const head = await workGit(dir, 'rev-parse', 'HEAD')

  timings.serviceStopWithChanges = await stopThroughService(users.developer, server.name)
  const name = `renku/autosave/developer/master/${masterFirst.slice(0, 7)}/${head.slice(0, 7)}`
  t.same(await autosaves(), [name], 'the autosave branch is in the repository')
  t.equal(await bareGit('rev-parse', `${name}^@`), head, 'one commit on top of the local commit')
  t.same(
    (await bareGit('ls-tree', '-r', '--name-only', name)).split('\n').sort(),
    ['README.md', 'findings.md', 'notebooks/analysis.ipynb'],
    'holding the working directory',
  )
  t.equal(await bareGit('show', `${name}:README.md`), '# Demo project\n\nChanged in the notebook.')
  const log = await serverLog('developer', server.name)
  t.match(log, `autosave: pushed ${name} (stopped; `, 'the log says so')
  timings.saveWithChanges = Number(/autosave: pushed .* \(stopped; ([\d.]+) s\)/.exec(log)?.[1])
  t.notMatch(await serverLog('developer', server.name), world.users.developer.token)
  t.notOk(existsSync(workRoot('developer', server.name)), 'the work directory is gone')
  saved = { name, server: server.name, head }
})

t.test('launching the same commit again restores it and deletes the branch', async (t) => {
  if (!saved) throw new Error('nothing was saved')
  const developer = stack.as(users.developer)
  const listed = await developer<{ autosaves: { name: string; commit: string }[] }>(
    'GET',
    'demo-group/demo-project/autosave',
  )
  t.equal(listed.status, 200)
  t.same(
    listed.body.autosaves.map((a) => a.name),
    [saved.name],
    'GET autosave lists it',
  )

  const server = await launch(users.developer, { commit_sha: masterFirst })
  t.equal(server.name, saved.server, 'the same server again')
  t.equal(server.annotations['renku.io/autosave'], saved.name, 'the server object names the autosave')
  t.equal((await hub.spawnedOptions('developer', server.name))?.autosave, saved.name, 'passed to the spawner')
  const dir = workTree('developer', server.name)
  t.equal(await workGit(dir, 'rev-parse', 'HEAD'), saved.head, 'HEAD is the local commit')
  t.equal(await workGit(dir, 'rev-parse', '--abbrev-ref', 'HEAD'), 'master')
  t.equal(await readFile(path.join(dir, 'findings.md'), 'utf8'), '# Findings\n\nWritten in the notebook.\n')
  t.equal(await readFile(path.join(dir, 'README.md'), 'utf8'), '# Demo project\n\nChanged in the notebook.\n')
  t.same(
    (await exec('git', ['-C', dir, 'status', '--porcelain'])).stdout.split('\n').filter(Boolean).sort(),
    [' M README.md', '?? findings.md'],
    'the changes are back, uncommitted and unstaged',
  )
  t.same(await autosaves(), [], 'the autosave branch is gone')
  t.same(
    (await developer('GET', 'demo-group/demo-project/autosave')).body.autosaves,
    [],
    'and no longer listed',
  )
  t.match(await serverLog('developer', server.name), `clone-repo: restored autosave ${saved.name}`)

  // Stopping it again saves the restored work again.
  await stopThroughService(users.developer, server.name)
  t.same(await autosaves(), [saved.name], 'saved again at the next stop')
  await deleteBranch(saved.name)
})

t.test('a stop made at the hub directly (as the culler makes it) saves too', async (t) => {
  const server = await launch(users.developer, { commit_sha: masterSecond })
  await writeFile(users.developer, server, 'culled.md', 'Idle, but not lost.\n')
  const started = Date.now()
  const stopped = await hub.admin('DELETE', `/users/developer/servers/${server.name}`)
  t.ok([202, 204].includes(stopped.status), `the hub stops it (${stopped.status})`)
  const name = `renku/autosave/developer/master/${masterSecond.slice(0, 7)}/${masterSecond.slice(0, 7)}`
  await eventually(
    async () => ((await autosaves()).includes(name) ? true : undefined),
    60_000,
    'the autosave',
  )
  await eventually(
    async () => (existsSync(workRoot('developer', server.name)) ? undefined : true),
    30_000,
    'the work directory to go',
  )
  timings.hubStopWithChanges = (Date.now() - started) / 1000
  t.equal(await bareGit('rev-parse', `${name}^`), masterSecond, 'on top of the launch commit')
  t.equal(await bareGit('show', `${name}:culled.md`), 'Idle, but not lost.')

  // Not removed, it lingers at the hub: listed as stopped, not as failed to start.
  const developer = stack.as(users.developer)
  const listed = await eventually(
    async () => {
      const { status, body } = await developer<ServerObject>('GET', `servers/${server.name}`)
      return status === 200 && body.status.reason ? body : undefined
    },
    10_000,
    'the stopped server listed',
  )
  t.equal(listed.status.state, 'failed')
  t.equal(listed.status.reason, 'Stopped')
  t.match(listed.status.message, /^The server was stopped \(for example after being idle\)/)
  // Launched again, it starts again with the saved work.
  const again = await launch(users.developer, { commit_sha: masterSecond })
  t.equal(again.name, server.name, 'the same server again')
  t.equal(again.annotations['renku.io/autosave'], name, 'restoring the autosave')
  t.equal(
    await readFile(path.join(workTree('developer', server.name), 'culled.md'), 'utf8'),
    'Idle, but not lost.\n',
    'the work is back',
  )
  t.notOk((await autosaves()).includes(name), 'and its branch is gone')
  await stopThroughService(users.developer, server.name)
  for (const branch of await autosaves()) await deleteBranch(branch)
})

t.test('a server that outlived its GitLab token saves with a refreshed token', async (t) => {
  const pair = gitlab.issueToken('maintainer', { scopes: ['api', 'read_user', 'write_repository'] })
  const setAuthState = (authState: Record<string, string>) =>
    hub.admin('PATCH', '/users/maintainer', { auth_state: authState })
  t.equal(
    (await setAuthState({ access_token: pair.accessToken, refresh_token: pair.refreshToken })).status,
    200,
  )
  t.teardown(() => setAuthState({ access_token: world.users.maintainer.token }))

  const server = await launch(users.maintainer, { commit_sha: feature, branch: 'feature' })
  await writeFile(users.maintainer, server, 'late-night.md', 'Three hours in.\n')
  gitlab.expireToken(pair.accessToken)

  await stopThroughService(users.maintainer, server.name)
  const name = `renku/autosave/maintainer/feature/${feature.slice(0, 7)}/${feature.slice(0, 7)}`
  t.same(await autosaves(), [name], 'saved with a refreshed token')
  const authState = (await hub.admin('GET', '/users/maintainer')).body as {
    auth_state: { access_token: string; refresh_token: string }
  }
  t.not(authState.auth_state.access_token, pair.accessToken, 'the new access token is stored')
  t.not(authState.auth_state.refresh_token, pair.refreshToken, 'and the new refresh token')
  t.ok(
    world.oauthTokens?.find((o) => o.refreshToken === pair.refreshToken)?.revoked,
    'the old one is used up',
  )
  const log = await serverLog('maintainer', server.name)
  t.match(log, `autosave: pushed ${name}`)
  t.notMatch(log, authState.auth_state.access_token, 'no token in the log')
  await deleteBranch(name)
})

t.test('a server without changes pushes nothing', async (t) => {
  const before = await autosaves()
  const server = await launch(users.developer, { commit_sha: feature, branch: 'feature' })
  timings.serviceStopNothingToSave = await stopThroughService(users.developer, server.name)
  t.same(await autosaves(), before, 'no branch')
  const log = await serverLog('developer', server.name)
  t.match(log, 'autosave: nothing to save (stopped; ')
  timings.saveNothing = Number(/autosave: nothing to save \(stopped; ([\d.]+) s\)/.exec(log)?.[1])
  t.notOk(existsSync(workRoot('developer', server.name)), 'the work directory is gone')
})

t.test('GitLab down at stop time: the stop completes and the log says why', async (t) => {
  const server = await launch(users.developer, { commit_sha: masterSecond })
  await writeFile(users.developer, server, 'unlucky.md', 'GitLab is down.\n')
  gitlab.faults.push({ server: 'gitlab', path: /./, hangUp: true })
  t.teardown(() => {
    gitlab.faults.length = 0
  })
  const before = await autosaves()
  const seconds = await stopThroughService(users.developer, server.name)
  timings.serviceStopGitLabDown = seconds
  t.ok(seconds < 40, `stopped in ${seconds.toFixed(1)} s`)
  t.same(await autosaves(), before, 'nothing could be pushed')
  t.match(
    await serverLog('developer', server.name),
    /autosave: error: push to http:\/\/127\.0\.0\.1:\d+\/demo-group\/demo-project\.git failed: .+ \(stopped; [\d.]+ s\)/,
    'the server log says why nothing was saved',
  )
  t.match(hub.output(), /autosave: error: push .* failed/, 'and so does the hub log')
  t.notOk(existsSync(workRoot('developer', server.name)), 'the work directory is gone')
  t.equal(serverName('demo-group', 'demo-project', 'master', masterSecond), server.name)
})

t.test('a server whose process ended on its own saves too', async (t) => {
  const server = await launch(users.developer, { commit_sha: masterSecond })
  await writeFile(users.developer, server, 'crashed.md', 'The kernel took it down.\n')
  const state = (await hub.admin('GET', '/users/developer')).body as {
    servers: Record<string, { state: { pid?: number } }>
  }
  const pid = state.servers[server.name]?.state.pid
  if (!pid) throw new Error('no pid in the server state')
  process.kill(pid, 'SIGKILL')
  const name = `renku/autosave/developer/master/${masterSecond.slice(0, 7)}/${masterSecond.slice(0, 7)}`
  await eventually(
    async () => ((await autosaves()).includes(name) ? true : undefined),
    30_000,
    'the autosave',
  )
  t.equal(await bareGit('show', `${name}:crashed.md`), 'The kernel took it down.')
  await eventually(
    async () => (existsSync(workRoot('developer', server.name)) ? undefined : true),
    30_000,
    'the work directory to go',
  )
  t.match(await serverLog('developer', server.name), `autosave: pushed ${name} (ended; `)
  await deleteBranch(name)
  await stack.as(users.developer)('DELETE', `servers/${server.name}`)
})

t.test('a work tree left from an earlier run is saved and never reused', async (t) => {
  const name = serverName('demo-group', 'demo-project', 'feature', feature)
  const stale = workTree('developer', name)
  // As a hub that died without stopping its servers leaves one behind.
  await exec('/bin/sh', [path.resolve(import.meta.dirname, '..', '..', 'chart', 'files', 'clone-repo.sh')], {
    env: {
      PATH: '/usr/bin:/bin',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_REPOSITORY_URL: `${gitlab.url}/demo-group/demo-project.git`,
      GIT_COMMIT_SHA: feature,
      GIT_BRANCH: 'feature',
      GIT_TARGET_DIR: stale,
      GIT_ACCESS_TOKEN: world.users.developer.token,
    },
  })
  await exec('/bin/sh', ['-c', `printf 'left behind\\n' > '${path.join(stale, 'leftover.md')}'`])
  const server = await launch(users.developer, { commit_sha: feature, branch: 'feature' })
  t.equal(server.name, name)
  const saved = `renku/autosave/developer/feature/${feature.slice(0, 7)}/${feature.slice(0, 7)}`
  t.ok((await autosaves()).includes(saved), 'its work was saved first')
  t.equal(await bareGit('show', `${saved}:leftover.md`), 'left behind')
  t.notOk(existsSync(path.join(stale, 'leftover.md')), 'the new server starts from a fresh clone')
  t.match(await serverLog('developer', name), 'autosave: pushed')
  t.match(await serverLog('developer', name), '(left from an earlier run; ')
  await deleteBranch(saved)
  await stopThroughService(users.developer, name)
})

t.test("the hub's own metrics count the saves by outcome", async (t) => {
  const metrics = await hub.admin('GET', '/../metrics')
  t.equal(metrics.status, 200)
  const count = (outcome: string) =>
    Number(
      new RegExp(`^renku_notebooks_hub_autosaves_total\\{outcome="${outcome}"\\} (\\S+)$`, 'm').exec(
        String(metrics.body),
      )?.[1] ?? 0,
    )
  // The tests above pushed several saves, found one server with nothing to save, and one push failed.
  t.ok(count('pushed') >= 3, `pushed: ${count('pushed')}`)
  t.ok(count('nothing') >= 1, `nothing to save: ${count('nothing')}`)
  t.ok(count('failed') >= 1, `failed: ${count('failed')}`)
})
