/**
 * Git inside a server, over the real hub and real notebook servers, typed into the notebook's own
 * terminal (its terminals API and WebSocket): push, fetch and pull as the user through the git
 * proxy beside the server, LFS both ways (push, clone with `lfs_auto_fetch`, autosave and
 * restore), no token anywhere the notebook can see, none sent elsewhere, and a push that still
 * works after the access token expired.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import type { HubUser } from '../../dev/hub.js'
import { loopbackAlias } from '../../dev/ports.js'
import { eventually, startStack } from '../../dev/stack.js'
import { readLfsObject } from '../../dev/stand-ins/gitlab/index.js'
import type { ServerObject } from '../../schemas/servers.js'
import { launchRunning, stopGone } from '../support/servers.js'
import { openTerminal, type Terminal } from '../support/terminal.js'

const exec = promisify(execFile)
// Polls and token checks every second: the expiry case needs the hub's refresh within seconds.
// GitLab under this machine's name, as in the local stack: git-lfs (Go) never uses a proxy for
// 127.0.0.1, and would go straight to GitLab without credentials.
const alias = await loopbackAlias()
if (!alias) throw new Error('this machine has no host name that resolves to a loopback address')
const stack = await startStack({
  gitlabByHostName: true,
  hubEnv: { JHUB_POLL_INTERVAL: '1', JHUB_TOKEN_SYNC_SECONDS: '1' },
})
t.teardown(() => stack.stop())

const { world, users, hub, gitlab } = stack
const { masterSecond } = world.commits.demo
const demo = { namespace: 'demo-group', project: 'demo-project' }
const repositoryUrl = `${gitlab.url}/demo-group/demo-project.git`
const bare = world.projects.demo.repoDir
const developer = world.users.developer
const workTree = (server: string) => path.join(hub.runDir, 'work', 'developer', server, 'demo-project')
const tokenFile = (server: string) => path.join(hub.runDir, 'git-proxy', `developer--${server}.token`)
const bareGit = async (...args: string[]) => (await exec('git', ['--git-dir', bare, ...args])).stdout.trim()

// The developer logs in with an OAuth token pair, so that the hub can refresh it.
const pair = gitlab.issueToken('developer', { scopes: ['api', 'read_user', 'write_repository'] })
const setAuthState = (authState: Record<string, string>) =>
  hub.admin('PATCH', '/users/developer', { auth_state: authState })
await setAuthState({ access_token: pair.accessToken, refresh_token: pair.refreshToken })
/** Every string GitLab has accepted as the developer's token in this run. */
const developerTokens = () =>
  [
    developer.token,
    ...(world.oauthTokens ?? [])
      .filter((o) => o.username === 'developer')
      .flatMap((o) => [o.accessToken, o.refreshToken]),
  ].filter(Boolean)

const launch = (user: HubUser, body: Record<string, unknown>) =>
  launchRunning(stack.as(user), { ...demo, ...body })

const stop = (user: HubUser, name: string) => stopGone(stack.as(user), name)

/** Runs a command in the terminal; fails the test with its output when it exits non-zero. */
async function must(t: Test, terminal: Terminal, command: string, timeoutMs?: number) {
  const result = await terminal.run(command, timeoutMs)
  t.equal(result.exitCode, 0, `\`${command}\` exits 0`, { output: result.output })
  return result.output
}

const files = async (dir: string): Promise<string[]> =>
  (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile())
    .map((entry) => path.join(entry.parentPath, entry.name))

let first: ServerObject
let terminal: Terminal
let lfsCommit = ''
let lfsData: Buffer
let proxyPort = 0

t.before(async () => {
  first = await launch(users.developer, { commit_sha: masterSecond, branch: 'master' })
  terminal = await openTerminal(first.url, users.developer.token)
  await terminal.run(`cd ${workTree(first.name)}`)
})
t.teardown(() => terminal?.close())

t.test('origin is the project, commits are the user’s, a new branch is pushed', async (t) => {
  const remotes = await must(t, terminal, 'git remote -v')
  t.match(remotes, `origin\t${repositoryUrl} (push)`, 'origin is http_url_to_repo')
  t.equal((await must(t, terminal, 'git config user.name')).trim(), 'Dee Veloper')
  t.equal((await must(t, terminal, 'git config user.email')).trim(), 'developer@example.com')

  await must(t, terminal, "git switch -q -c from-notebook && echo 'from the notebook' > notebook.txt")
  await must(t, terminal, "git add notebook.txt && git commit -q -m 'Written in the notebook'")
  await must(t, terminal, 'git push -q -u origin from-notebook')
  const local = (await must(t, terminal, 'git rev-parse HEAD')).trim()
  t.equal(await bareGit('rev-parse', 'refs/heads/from-notebook'), local, 'GitLab has the branch')
  t.equal(
    await bareGit('log', '-1', '--format=%an <%ae>', 'from-notebook'),
    'Dee Veloper <developer@example.com>',
    'authored by the GitLab user',
  )
})

t.test('fetch and pull bring a commit pushed elsewhere', async (t) => {
  // Another clone pushes to master, straight to GitLab.
  const other = path.join(hub.runDir, 'elsewhere')
  const env = {
    ...process.env,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`oauth2:${developer.token}`).toString('base64')}`,
  }
  await exec('git', ['clone', '-q', '-b', 'master', repositoryUrl, other], { env })
  await exec(
    'git',
    [
      '-C',
      other,
      '-c',
      'user.name=O',
      '-c',
      'user.email=o@example.com',
      'commit',
      '-q',
      '--allow-empty',
      '-m',
      'Elsewhere',
    ],
    { env },
  )
  await exec('git', ['-C', other, 'push', '-q', 'origin', 'master'], { env })
  const pushed = (await exec('git', ['-C', other, 'rev-parse', 'HEAD'])).stdout.trim()

  await must(t, terminal, 'git fetch -q origin')
  t.equal((await must(t, terminal, 'git rev-parse origin/master')).trim(), pushed, 'fetched')
  await must(t, terminal, 'git switch -q master && git pull -q --ff-only')
  t.equal((await must(t, terminal, 'git rev-parse HEAD')).trim(), pushed, 'pulled')
})

t.test('an LFS file is pushed, and GitLab has it byte for byte', async (t) => {
  await must(t, terminal, 'git switch -q -c with-data')
  await must(t, terminal, "git lfs track '*.bin' >/dev/null && head -c 10485760 /dev/urandom > data.bin")
  await must(t, terminal, "git add .gitattributes data.bin && git commit -q -m 'Data'")
  const started = Date.now()
  await must(t, terminal, 'git push -q origin with-data', 120_000)
  t.comment(`git push of a 10 MB LFS file through the git proxy: ${(Date.now() - started) / 1000} s`)
  lfsData = await readFile(path.join(workTree(first.name), 'data.bin'))
  const oid = createHash('sha256').update(lfsData).digest('hex')
  t.ok((await readLfsObject(world.projects.demo, oid))?.equals(lfsData), 'the object, byte for byte')
  lfsCommit = await bareGit('rev-parse', 'refs/heads/with-data')
  t.match(await bareGit('show', `${lfsCommit}:data.bin`), `oid sha256:${oid}`, 'the branch holds its pointer')
})

t.test('nothing the notebook can read holds the token', async (t) => {
  const seen = [
    await must(t, terminal, 'env'),
    await must(t, terminal, 'git config -l --show-origin'),
    (await terminal.run('cat ~/.git-credentials ~/.config/git/credentials')).output,
    await must(t, terminal, 'ps -eo args'),
  ].join('\n')
  const proxied =
    /\thttp\.http:\/\/[^/]+\/demo-group\/demo-project\.git\.proxy=http:\/\/127\.0\.0\.1:(\d+)/.exec(seen)
  t.ok(proxied, 'git reaches the repository through the proxy')
  proxyPort = Number(proxied?.[1])
  const work = path.join(hub.runDir, 'work', 'developer', first.name)
  const small = []
  for (const file of await files(work)) if ((await stat(file)).size < 1 << 20) small.push(file)
  const contents = await Promise.all(small.map((file) => readFile(file, 'latin1')))
  const tokens = developerTokens()
  t.ok(tokens.length >= 2, 'the tokens to look for')
  for (const token of tokens) {
    t.notOk(seen.includes(token), 'not in env, git config, credential files or process arguments')
    t.notOk(
      contents.some((text) => text.includes(token)),
      'not in the work directory',
    )
    t.notOk(contents.some((text) => text.includes(Buffer.from(`oauth2:${token}`).toString('base64'))))
  }
})

t.test('git requests for another project or host carry no credentials', async (t) => {
  const before = gitlab.requests.length
  const otherHost = repositoryUrl.replace(`//${alias.host}:`, `//${alias.address}:`)
  const otherProject = `${gitlab.url}/science/lab/public-notebook.git`
  const refused = await terminal.run(`GIT_TERMINAL_PROMPT=0 git ls-remote ${otherHost}`, 20_000)
  t.not(refused.exitCode, 0, 'the private project under another host name is refused')
  await must(t, terminal, `git ls-remote ${otherProject} >/dev/null`)
  // (The hub's own token checks, on the API, also land here meanwhile.)
  const sent = gitlab.requests.slice(before).filter((r) => !/^\/(api|oauth)\//.test(r.path))
  t.ok(
    sent.some((r) => r.path.startsWith('/science/lab/public-notebook.git/')),
    'the public project was asked',
  )
  t.ok(
    sent.some((r) => r.path.startsWith('/demo-group/demo-project.git/')),
    'and the other host',
  )
  t.same(
    sent.filter((r) => r.credentials),
    [],
    'none with credentials',
  )
})

t.test('a server started before the token expired still pushes', async (t) => {
  const before = await readFile(tokenFile(first.name), 'utf8')
  gitlab.expireToken(before)
  await eventually(
    async () => ((await readFile(tokenFile(first.name), 'utf8')) !== before ? true : undefined),
    20_000,
    'the hub to refresh the proxy’s token',
  )
  await must(t, terminal, "git commit -q --allow-empty -m 'After the expiry' && git push -q origin with-data")
  t.equal(
    await bareGit('log', '-1', '--format=%s', 'with-data'),
    'After the expiry',
    'pushed with the refreshed token',
  )
  lfsCommit = await bareGit('rev-parse', 'refs/heads/with-data')
})

t.test('the proxy stops with the server', async (t) => {
  await terminal.close()
  await stop(users.developer, first.name)
  await t.rejects(readFile(tokenFile(first.name)), 'the token file is gone')
  await t.rejects(fetch(`http://127.0.0.1:${proxyPort}/`), 'the proxy no longer listens')
  const log = await readFile(hub.serverLogPath('developer', first.name), 'utf8')
  t.match(log, /git proxy for .* listening on 127\.0\.0\.1:/, 'its log is in the server’s log')
  t.match(
    log,
    /POST http:\/\/[^/]+\/demo-group\/demo-project\.git\/git-receive-pack 200 /,
    'one line per request',
  )
  t.match(
    log,
    /POST http:\/\/[^/]+\/demo-group\/demo-project\.git\/info\/lfs\/objects\/batch 200 /,
    'LFS too',
  )
  for (const token of developerTokens())
    t.notOk(log.includes(token) || hub.output().includes(token), 'no token logged')
})

t.test('LFS content at a clone with lfs_auto_fetch, and through an autosave and its restore', async (t) => {
  const body = { commit_sha: lfsCommit, branch: 'with-data', serverOptions: { lfs_auto_fetch: true } }
  const server = await launch(users.developer, body)
  const dir = workTree(server.name)
  t.ok((await readFile(path.join(dir, 'data.bin'))).equals(lfsData), 'the clone has the content')

  const shell = await openTerminal(server.url, users.developer.token)
  await shell.run(`cd ${dir}`)
  await must(t, shell, 'head -c 2097152 /dev/urandom > unsaved.bin')
  const unsaved = await readFile(path.join(dir, 'unsaved.bin'))
  await shell.close()
  await stop(users.developer, server.name)
  const log = await readFile(hub.serverLogPath('developer', server.name), 'utf8')
  t.match(log, /autosave: pushed renku\/autosave\/developer\/with-data\//, 'saved at the stop')
  const oid = createHash('sha256').update(unsaved).digest('hex')
  t.ok((await readLfsObject(world.projects.demo, oid))?.equals(unsaved), 'its LFS object uploaded')

  // Back without lfs_auto_fetch: the restore still brings the content.
  const again = await launch(users.developer, { commit_sha: lfsCommit, branch: 'with-data' })
  const back = workTree(again.name)
  t.match(await readFile(hub.serverLogPath('developer', again.name), 'utf8'), /restored autosave/)
  t.ok((await readFile(path.join(back, 'unsaved.bin'))).equals(unsaved), 'the unsaved file, with its content')
  // Without lfs_auto_fetch the committed LFS file is a pointer until `git lfs pull`, through the proxy.
  t.match(
    await readFile(path.join(back, 'data.bin'), 'utf8'),
    /^version https:\/\/git-lfs/,
    'a pointer at first',
  )
  const shellAgain = await openTerminal(again.url, users.developer.token)
  await shellAgain.run(`cd ${back}`)
  await must(t, shellAgain, 'git lfs pull', 60_000)
  await shellAgain.close()
  t.ok((await readFile(path.join(back, 'data.bin'))).equals(lfsData), '`git lfs pull` fetched its content')
  await stop(users.developer, again.name)
})
