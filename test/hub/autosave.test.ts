/**
 * The save script (chart/files/autosave.sh) and the restore in clone-repo.sh, against the GitLab
 * stand-in's real repository over smart HTTP.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { readLfsObject } from '../../dev/stand-ins/gitlab/index.js'
import { startTestGitLab } from '../support/gitlab.js'
import { recordingGit } from '../support/recording-git.js'

const execFileAsync = promisify(execFile)
const FILES = path.resolve(import.meta.dirname, '..', '..', 'chart', 'files')
const AUTOSAVE = path.join(FILES, 'autosave.sh')
const CLONE = path.join(FILES, 'clone-repo.sh')

const { dir, world, gitlab } = await startTestGitLab(t, 'autosave')

const { developer } = world.users
const { masterFirst } = world.commits.demo
const demoRepo = `${gitlab.url}/demo-group/demo-project.git`
const bare = world.projects.demo.repoDir

// A git on PATH that records its arguments: the token must never be one of them.
const { bin, argvLog } = await recordingGit(dir)

const baseEnv = { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, GIT_CONFIG_GLOBAL: '/dev/null' }
const run = (script: string, env: Record<string, string>) =>
  execFileAsync('/bin/sh', [script], { env: { ...baseEnv, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, out: stdout + stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      code: err.code ?? -1,
      out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
    }),
  )
const gitIn = async (cwd: string, ...args: string[]) =>
  (
    await execFileAsync('git', ['-C', cwd, ...args], {
      env: {
        ...process.env,
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_AUTHOR_NAME: 'Dee',
        GIT_AUTHOR_EMAIL: 'dee@example.com',
        GIT_COMMITTER_NAME: 'Dee',
        GIT_COMMITTER_EMAIL: 'dee@example.com',
      },
    })
  ).stdout.trim()
const remoteSha = async (branch: string) =>
  (
    await execFileAsync('git', [
      '--git-dir',
      bare,
      'rev-parse',
      '-q',
      '--verify',
      `refs/heads/${branch}`,
    ]).catch(() => ({ stdout: '' }))
  ).stdout.trim()
const autosaveBranches = async () =>
  (
    await execFileAsync('git', [
      '--git-dir',
      bare,
      'for-each-ref',
      '--format=%(refname:short)',
      'refs/heads/renku/',
    ])
  ).stdout
    .split('\n')
    .filter(Boolean)

let clones = 0
async function cloneAt(env: Record<string, string> = {}) {
  const target = path.join(dir, 'work', `clone-${++clones}`)
  const result = await run(CLONE, {
    GIT_REPOSITORY_URL: demoRepo,
    GIT_COMMIT_SHA: masterFirst,
    GIT_BRANCH: 'master',
    GIT_TARGET_DIR: target,
    GIT_ACCESS_TOKEN: developer.token,
    ...env,
  })
  return { target, ...result }
}
const saveEnv = (target: string) => ({
  GIT_TARGET_DIR: target,
  AUTOSAVE_USER: 'alice',
  GIT_BRANCH: 'master',
  GIT_COMMIT_SHA: masterFirst,
  GIT_ACCESS_TOKEN: developer.token,
})

t.test('saves tracked changes, untracked files and local commits, and restores them', async (t) => {
  const { target, code } = await cloneAt()
  t.equal(code, 0, 'cloned')
  await writeFile(path.join(target, '.gitignore'), '*.log\n')
  await gitIn(target, 'add', '.gitignore')
  await gitIn(target, 'commit', '-q', '-m', 'Ignore logs')
  const localCommit = await gitIn(target, 'rev-parse', 'HEAD')
  await writeFile(path.join(target, 'README.md'), '# Demo project\n\nEdited in the notebook.\n')
  await mkdir(path.join(target, 'notes'))
  await writeFile(path.join(target, 'notes', 'new.txt'), 'A new file.\n')
  await writeFile(path.join(target, 'secret.log'), 'ignored\n')
  await rm(path.join(target, 'requirements.txt'))
  await writeFile(path.join(target, 'results-staged.md'), 'staged\n')
  await gitIn(target, 'add', 'results-staged.md')
  const statusBefore = await gitIn(target, 'status', '--porcelain')

  const tokenFile = path.join(dir, 'token')
  await writeFile(tokenFile, `${developer.token}\n`)
  const { GIT_ACCESS_TOKEN: _, ...withoutToken } = saveEnv(target)
  const saved = await run(AUTOSAVE, { ...withoutToken, GIT_ACCESS_TOKEN_FILE: tokenFile })
  const name = `renku/autosave/alice/master/${masterFirst.slice(0, 7)}/${localCommit.slice(0, 7)}`
  t.equal(saved.code, 0, 'exit 0')
  t.equal(saved.out, `autosave: pushed ${name}\n`, 'one line naming the branch')
  t.equal(await gitIn(target, 'status', '--porcelain'), statusBefore, 'the index and files are untouched')
  t.equal(await gitIn(target, 'rev-parse', 'HEAD'), localCommit, 'HEAD is untouched')

  const tip = await remoteSha(name)
  t.ok(tip, 'the autosave branch is in the repository')
  const show = (spec: string) => execFileAsync('git', ['--git-dir', bare, ...spec.split(' ')])
  t.equal((await show(`rev-parse ${tip}^@`)).stdout.trim(), localCommit, 'one commit on the local HEAD')
  const files = (await show(`ls-tree -r --name-only ${tip}`)).stdout.split('\n').filter(Boolean).sort()
  t.same(
    files,
    ['.gitignore', 'README.md', 'notebooks/analysis.ipynb', 'notes/new.txt', 'results-staged.md'],
    'the working directory: deletions gone, new files in, ignored files out',
  )
  t.equal((await show(`show ${tip}:README.md`)).stdout, '# Demo project\n\nEdited in the notebook.\n')

  const restored = await cloneAt({ GIT_AUTOSAVE_BRANCH: name })
  t.equal(restored.code, 0)
  t.match(restored.out, `clone-repo: restored autosave ${name}`)
  const back = restored.target
  t.equal(await gitIn(back, 'rev-parse', 'HEAD'), localCommit, 'HEAD is the saved HEAD')
  t.equal(await gitIn(back, 'rev-parse', '--abbrev-ref', 'HEAD'), 'master', 'on the launch branch')
  t.equal(await readFile(path.join(back, 'notes', 'new.txt'), 'utf8'), 'A new file.\n', 'files are back')
  t.equal(await readFile(path.join(back, 'README.md'), 'utf8'), '# Demo project\n\nEdited in the notebook.\n')
  t.same(
    (await execFileAsync('git', ['-C', back, 'status', '--porcelain'])).stdout
      .split('\n')
      .filter(Boolean)
      .sort(),
    [' D requirements.txt', ' M README.md', '?? notes/', '?? results-staged.md'],
    'the differences are unstaged and uncommitted',
  )
  t.equal(await remoteSha(name), '', 'the autosave branch is deleted')
  t.notMatch(await readFile(path.join(back, '.git', 'config'), 'utf8'), developer.token)
  t.notMatch(saved.out + restored.out, developer.token, 'no token in the output')
  t.notMatch(await readFile(path.join(target, '.git', 'config'), 'utf8'), developer.token)
  t.notMatch(await readFile(argvLog, 'utf8'), developer.token, 'the token never reached a command line')

  const again = await run(CLONE, {
    GIT_REPOSITORY_URL: demoRepo,
    GIT_COMMIT_SHA: masterFirst,
    GIT_BRANCH: 'master',
    GIT_TARGET_DIR: back,
    GIT_ACCESS_TOKEN: developer.token,
    GIT_AUTOSAVE_BRANCH: name,
  })
  t.equal(again.code, 0, 'a rerun (a restarted init container) keeps the restored work tree')
  t.match(again.out, /already at .* prepared by an earlier run/)
  t.equal(await readFile(path.join(back, 'README.md'), 'utf8'), '# Demo project\n\nEdited in the notebook.\n')
})

t.test('nothing to save pushes nothing; local commits alone are saved', async (t) => {
  const before = await autosaveBranches()
  const { target } = await cloneAt()
  await writeFile(path.join(target, 'debug.log'), 'x\n')
  await writeFile(path.join(target, '.git', 'info', 'exclude'), '*.log\n')
  const { GIT_ACCESS_TOKEN: _, ...noToken } = saveEnv(target)
  const nothing = await run(AUTOSAVE, noToken)
  t.same(nothing, { code: 0, out: 'autosave: nothing to save\n' }, 'a clean work tree: nothing to save')
  t.same(await autosaveBranches(), before, 'no branch')

  await gitIn(target, 'commit', '-q', '--allow-empty', '-m', 'Local only')
  const head = await gitIn(target, 'rev-parse', 'HEAD')
  const saved = await run(AUTOSAVE, saveEnv(target))
  t.equal(saved.code, 0)
  const name = `renku/autosave/alice/master/${masterFirst.slice(0, 7)}/${head.slice(0, 7)}`
  t.equal(saved.out, `autosave: pushed ${name}\n`, 'a local commit is unsaved work')
  t.equal(
    (await execFileAsync('git', ['--git-dir', bare, 'rev-parse', `${name}^`])).stdout.trim(),
    head,
    'on top of it',
  )

  // Pushed with the user's token to the launch's URL, even when origin was pointed elsewhere.
  await gitIn(target, 'remote', 'set-url', 'origin', 'http://127.0.0.1:1/elsewhere.git')
  const again = await run(AUTOSAVE, { ...saveEnv(target), GIT_REPOSITORY_URL: demoRepo })
  t.equal(again.code, 0, 'saving again replaces the same branch')
})

t.test('failures: one line with the reason, exit 1, in bounded time', async (t) => {
  const { target } = await cloneAt()
  await writeFile(path.join(target, 'work.txt'), 'precious\n')

  const refused = await run(AUTOSAVE, { ...saveEnv(target), GIT_REPOSITORY_URL: 'http://127.0.0.1:1/x.git' })
  t.equal(refused.code, 1, 'GitLab unreachable: exit 1')
  t.match(
    refused.out,
    /^autosave: error: push to http:\/\/127\.0\.0\.1:1\/x\.git failed: .*(connect|refused)/i,
  )
  t.equal(refused.out.split('\n').filter(Boolean).length, 1, 'one line')

  // A GitLab that accepts connections and never answers.
  const sockets: net.Socket[] = []
  const silent = net.createServer((socket) => sockets.push(socket))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  const port = (silent.address() as net.AddressInfo).port
  const started = Date.now()
  const hung = await run(AUTOSAVE, {
    ...saveEnv(target),
    GIT_REPOSITORY_URL: `http://127.0.0.1:${port}/x.git`,
    AUTOSAVE_TIMEOUT: '2',
  })
  const seconds = (Date.now() - started) / 1000
  t.equal(hung.code, 1)
  t.equal(hung.out, 'autosave: error: timed out after 2 s\n', 'says it timed out')
  t.ok(seconds < 6, `gave up in ${seconds.toFixed(1)} s`)

  const badToken = await run(AUTOSAVE, { ...saveEnv(target), GIT_ACCESS_TOKEN: 'glpat-bogus' })
  t.equal(badToken.code, 1, 'a bad token')
  t.match(badToken.out, /^autosave: error: push to .* failed: .*(Authentication failed|Username)/)
  const readOnly = gitlab.issueToken('developer', { scopes: ['read_repository'] })
  const noScope = await run(AUTOSAVE, { ...saveEnv(target), GIT_ACCESS_TOKEN: readOnly.accessToken })
  t.equal(noScope.code, 1, 'a token that may not push')
  t.match(noScope.out, /403/)
  t.notMatch(badToken.out + noScope.out, /glpat-bogus|oauth2/, 'no token in the output')
  const noToken = await run(AUTOSAVE, { ...saveEnv(target), GIT_ACCESS_TOKEN: '' })
  t.same(noToken, { code: 1, out: 'autosave: error: no GitLab token to push with\n' })
  const missing = await run(AUTOSAVE, { ...saveEnv(path.join(dir, 'nowhere')) })
  t.equal(missing.code, 1)
  t.match(missing.out, /does not exist/)
  t.equal(await readFile(path.join(target, 'work.txt'), 'utf8'), 'precious\n', 'the work tree is intact')
})

t.test(
  'LFS: the save uploads the objects of new files LFS tracks, the restore brings their content',
  async (t) => {
    const { target, code } = await cloneAt()
    t.equal(code, 0, 'cloned')
    t.match(
      await gitIn(target, 'config', '--get', 'filter.lfs.clean'),
      /git-lfs clean/,
      'the clone set up LFS',
    )
    await gitIn(target, 'lfs', 'track', '*.bin')
    const data = randomBytes(3 * 1024 * 1024)
    const oid = createHash('sha256').update(data).digest('hex')
    await writeFile(path.join(target, 'data.bin'), data)
    const head = await gitIn(target, 'rev-parse', 'HEAD')

    const saved = await run(AUTOSAVE, saveEnv(target))
    const name = `renku/autosave/alice/master/${masterFirst.slice(0, 7)}/${head.slice(0, 7)}`
    t.equal(saved.out, `autosave: pushed ${name}\n`, 'pushed: GitLab accepted the branch')
    const stored = await readLfsObject(world.projects.demo, oid)
    t.ok(stored?.equals(data), 'GitLab has the object, byte for byte')
    const pointer = (await execFileAsync('git', ['--git-dir', bare, 'show', `${name}:data.bin`])).stdout
    t.match(pointer, `oid sha256:${oid}`, 'the branch holds the pointer')

    // Without lfs_auto_fetch: the restored file still has its content.
    const restored = await cloneAt({ GIT_AUTOSAVE_BRANCH: name, GIT_LFS_AUTO_FETCH: 'false' })
    t.equal(restored.code, 0)
    t.match(restored.out, `restored autosave ${name}`)
    t.ok(
      (await readFile(path.join(restored.target, 'data.bin'))).equals(data),
      'the content is back, not a pointer',
    )
    t.same(
      (await gitIn(restored.target, 'status', '--porcelain')).split('\n').sort(),
      ['?? .gitattributes', '?? data.bin'],
      'as it was: new, untracked',
    )
    t.notMatch(await readFile(argvLog, 'utf8'), developer.token, 'the token never reached a command line')
  },
)

t.test('LFS: a file whose upload does not fit in the save is left out and named', async (t) => {
  const { target } = await cloneAt()
  await gitIn(target, 'lfs', 'track', '*.bin')
  await writeFile(path.join(target, 'huge.bin'), randomBytes(1024 * 1024))
  await writeFile(path.join(target, 'notes.md'), 'kept\n')
  const head = await gitIn(target, 'rev-parse', 'HEAD')
  // 5 s are kept for the branch's push: with 5 s in all, no LFS upload fits.
  const saved = await run(AUTOSAVE, { ...saveEnv(target), AUTOSAVE_TIMEOUT: '5' })
  const name = `renku/autosave/alice/master/${masterFirst.slice(0, 7)}/${head.slice(0, 7)}`
  t.equal(saved.code, 0)
  t.equal(saved.out, `autosave: pushed ${name}; not saved, too large for the 5 s save: huge.bin\n`)
  const files = (await execFileAsync('git', ['--git-dir', bare, 'ls-tree', '-r', '--name-only', name])).stdout
  t.match(files, /notes\.md/, 'the rest is saved')
  t.notMatch(files, /huge\.bin/, 'without the file that did not fit')
  await execFileAsync('git', ['--git-dir', bare, 'update-ref', '-d', `refs/heads/${name}`])
})

t.test('a restore that cannot happen leaves the plain checkout', async (t) => {
  const gone = await cloneAt({
    GIT_AUTOSAVE_BRANCH: `renku/autosave/alice/master/${masterFirst.slice(0, 7)}/0000000`,
  })
  t.equal(gone.code, 0, 'the clone still succeeds')
  t.match(gone.out, /could not fetch autosave .*; starting from/)
  t.equal(await gitIn(gone.target, 'rev-parse', 'HEAD'), masterFirst)
  t.equal(await gitIn(gone.target, 'status', '--porcelain'), '')

  const notAutosave = await cloneAt({ GIT_AUTOSAVE_BRANCH: 'feature' })
  t.equal(notAutosave.code, 0)
  t.match(notAutosave.out, /not an autosave branch/)
  t.ok(await remoteSha('feature'), 'a branch that is not an autosave is never deleted')
})

t.test('fresh_gitlab_token (gitlab_token.py) checks and refreshes a token against GitLab', async (t) => {
  const app = world.oauthApplication
  const script = `
import asyncio, json, sys
sys.path.insert(0, ${JSON.stringify(FILES)})
from gitlab_token import fresh_gitlab_token

class User:
    def __init__(self, name, state):
        self.name, self.state, self.saves = name, state, 0
    async def get_auth_state(self):
        return self.state
    async def save_auth_state(self, state):
        self.state, self.saves = state, self.saves + 1

class Log:
    def __init__(self):
        self.lines = []
    def info(self, message, *args):
        self.lines.append(message % args)
    warning = error = info

async def main():
    answers = []
    for case in json.load(sys.stdin):
        user, log = User("alice", case["state"]), Log()
        token = await fresh_gitlab_token(
            user, case["url"], case["client_id"], case["client_secret"], log=log, timeout=3
        )
        answers.append({"token": token, "state": user.state, "saves": user.saves, "log": log.lines})
    print(json.dumps(answers))

asyncio.run(main())
`
  const expired = gitlab.issueToken('developer', { scopes: ['api'] })
  gitlab.expireToken(expired.accessToken)
  const noRefresh = gitlab.issueToken('developer', { scopes: ['api'] })
  gitlab.expireToken(noRefresh.accessToken)
  const client = { url: gitlab.url, client_id: app.uid, client_secret: app.secret }
  const cases = [
    { ...client, state: { access_token: developer.token } },
    { ...client, state: { access_token: expired.accessToken, refresh_token: expired.refreshToken } },
    { ...client, state: { access_token: expired.accessToken, refresh_token: expired.refreshToken } },
    { ...client, state: { access_token: noRefresh.accessToken } },
    { ...client, state: {} },
    {
      ...client,
      client_secret: 'wrong',
      state: { access_token: noRefresh.accessToken, refresh_token: noRefresh.refreshToken },
    },
    { ...client, url: 'http://127.0.0.1:1', state: { access_token: developer.token } },
  ]
  const child = execFile('/usr/bin/python3', ['-c', script], { env: { PATH: '/usr/bin:/bin' } })
  child.stdin?.end(JSON.stringify(cases))
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.equal(code, 0, stderr)
  const [valid, refreshed, reused, withoutRefresh, none, badClient, unreachable] = JSON.parse(stdout) as {
    token: string | null
    state: Record<string, string>
    saves: number
    log: string[]
  }[]

  t.equal(valid?.token, developer.token, 'a valid token as it is')
  t.equal(valid?.saves, 0, 'nothing stored')
  t.ok(refreshed?.token && refreshed.token !== expired.accessToken, 'an expired token is refreshed')
  t.equal(refreshed?.saves, 1, 'the new pair is stored')
  t.equal(refreshed?.state.access_token, refreshed?.token)
  t.not(refreshed?.state.refresh_token, expired.refreshToken, 'with the new refresh token')
  const me = await fetch(`${gitlab.url}/api/v4/user`, {
    headers: { authorization: `Bearer ${refreshed?.token}` },
  })
  t.equal(me.status, 200, 'the refreshed token works')
  await me.arrayBuffer()
  t.equal(reused?.token, null, 'a used refresh token refreshes nothing')
  t.match(reused?.log.join('\n'), /refused to refresh .*invalid_grant \(HTTP 400\)/)
  t.equal(withoutRefresh?.token, null)
  t.match(withoutRefresh?.log.join('\n'), /no refresh token/)
  t.equal(none?.token, null)
  t.match(none?.log.join('\n'), /No GitLab token .* log in again/)
  t.equal(badClient?.token, null)
  t.match(badClient?.log.join('\n'), /invalid_client \(HTTP 401\)/)
  t.equal(
    unreachable?.token,
    developer.token,
    'GitLab unreachable: the stored token, for the push to say why',
  )
  t.match(unreachable?.log.join('\n'), /Cannot check the GitLab token/)
  const allLogs = JSON.stringify(
    [valid, reused, withoutRefresh, none, badClient, unreachable].map((a) => a?.log),
  )
  for (const secret of [developer.token, expired.accessToken, expired.refreshToken, app.secret]) {
    t.notOk(allLogs.includes(secret), 'no token or secret in the log')
  }
})
