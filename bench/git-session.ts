/**
 * Git inside a server, measured: the time of a real `git push` of a commit with a new 10 MB LFS
 * file through the git proxy against the same push straight to GitLab with the token (same run,
 * loopback, the GitLab stand-in), and the proxy process's RSS idle and after the pushes.
 * Run: npm run build && npx tsx bench/git-session.ts (it measures dist/git-proxy/main.js, as the
 * image runs it).
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { createWorld } from '../dev/gitlab-world.js'
import { freePort, loopbackAlias } from '../dev/ports.js'
import { startGitLab } from '../dev/stand-ins/gitlab/index.js'

const exec = promisify(execFile)
const ROUNDS = 3
const SIZE = 10 * 1024 * 1024

const dir = await mkdtemp(path.join(tmpdir(), 'git-session-bench-'))
const world = await createWorld(path.join(dir, 'repos'))
// Under the machine's name: git-lfs (Go) would bypass a proxy for 127.0.0.1.
const alias = await loopbackAlias()
if (!alias) throw new Error('no host name of this machine resolves to a loopback address')
const gitlab = await startGitLab(world, alias)
const url = `${gitlab.url}/demo-group/demo-project.git`
const token = world.users.developer.token
await writeFile(path.join(dir, 'token'), token)

const port = await freePort()
const proxy = spawn(process.execPath, [path.resolve('dist/git-proxy/main.js')], {
  env: {
    PATH: process.env.PATH,
    GIT_PROXY_REPOSITORY_URL: url,
    GIT_ACCESS_TOKEN_FILE: path.join(dir, 'token'),
    GIT_PROXY_PORT: String(port),
  },
  stdio: ['ignore', 'pipe', 'ignore'],
})
process.on('exit', () => proxy.kill('SIGKILL'))
await new Promise<void>((resolve) => {
  proxy.stdout.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('listening')) resolve()
  })
})
proxy.stdout.resume()
const rssMiB = async () =>
  Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${proxy.pid}/status`, 'utf8'))?.[1]) / 1024

const baseEnv = {
  PATH: process.env.PATH,
  HOME: dir,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_TERMINAL_PROMPT: '0',
}
const withToken = {
  ...baseEnv,
  GIT_CONFIG_COUNT: '1',
  GIT_CONFIG_KEY_0: 'http.extraHeader',
  GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}`,
}

async function clone(name: string, throughProxy: boolean) {
  const target = path.join(dir, name)
  await exec('git', ['clone', '-q', url, target], { env: withToken })
  const git = (...args: string[]) =>
    exec('git', ['-C', target, '-c', 'user.name=B', '-c', 'user.email=b@example.com', ...args], {
      env: throughProxy ? baseEnv : withToken,
      maxBuffer: 1 << 24,
    })
  await git('lfs', 'install', '--local')
  await git('config', 'lfs.locksverify', 'false')
  if (throughProxy) await git('config', `http.${url}.proxy`, `http://127.0.0.1:${port}`)
  return { target, git }
}

async function pushOnce(repo: Awaited<ReturnType<typeof clone>>, round: number, label: string) {
  const branch = `${label}-${round}`
  await repo.git('switch', '-q', '-c', branch, 'origin/master')
  await writeFile(path.join(repo.target, '.gitattributes'), '*.bin filter=lfs diff=lfs merge=lfs -text\n')
  await writeFile(path.join(repo.target, 'data.bin'), randomBytes(SIZE))
  await repo.git('add', '.gitattributes', 'data.bin')
  await repo.git('commit', '-q', '-m', branch)
  const started = performance.now()
  await repo.git('push', '-q', 'origin', branch)
  return (performance.now() - started) / 1000
}

const idle = await rssMiB()
const direct = await clone('direct', false)
const proxied = await clone('proxied', true)
const times: Record<string, number[]> = { direct: [], proxy: [] }
for (let round = 0; round < ROUNDS; round++) {
  times.direct?.push(await pushOnce(direct, round, 'direct'))
  times.proxy?.push(await pushOnce(proxied, round, 'proxy'))
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
const after = await rssMiB()
process.stdout.write(
  `${JSON.stringify(
    {
      pushOf10MBLfsFileSeconds: {
        direct: { median: median(times.direct ?? []), all: times.direct },
        throughProxy: { median: median(times.proxy ?? []), all: times.proxy },
      },
      proxyRssMiB: { idle: Math.round(idle), afterPushes: Math.round(after) },
    },
    null,
    2,
  )}\n`,
)
proxy.kill('SIGINT')
await gitlab.close()
await rm(dir, { recursive: true, force: true })
