// Reproduces the Dockerfile's runtime stage without a Docker engine: the
// stage's COPY lines are read from the Dockerfile and replayed into a temporary
// folder, its `npm ci` runs there (production dependencies only), and the
// image's CMD is started from that folder with the environment of the README's "Configuration".
// The service must answer its health check and exit 0 promptly on SIGTERM, as
// it will under tini in the pod.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, isAbsolute, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const prefix = '/services/notebooks/'
const token = 'runtime-image-test-token-0f3c9a'

interface Instruction {
  keyword: string
  args: string
}

interface Stage {
  name: string
  base: string
  workdir: string
  instructions: Instruction[]
}

/** The Dockerfile as stages of instructions (line continuations joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!pending && (line === '' || line.startsWith('#'))) continue
    if (pending && line.startsWith('#')) continue
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `
      continue
    }
    logical.push(pending + line)
    pending = ''
  }
  const stages: Stage[] = []
  for (const line of logical) {
    const [, keyword = '', args = ''] = line.match(/^(\S+)\s*(.*)$/) ?? []
    const upper = keyword.toUpperCase()
    if (upper === 'FROM') {
      const m = args.match(/^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i)
      stages.push({
        name: m?.[2] ?? String(stages.length),
        base: m?.[1] ?? '',
        workdir: '/',
        instructions: [],
      })
      continue
    }
    const stage = stages.at(-1)
    if (!stage) continue
    if (upper === 'WORKDIR') stage.workdir = posix.resolve(stage.workdir, args)
    stage.instructions.push({ keyword: upper, args })
  }
  return stages
}

/** `COPY [--flag=v...] src... dest` (shell form only, as this Dockerfile writes it). */
function parseCopy(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/).filter(Boolean)
  let from: string | undefined
  while (words[0]?.startsWith('--')) {
    const flag = words.shift() ?? ''
    const m = flag.match(/^--from=(.+)$/)
    if (m) from = m[1]
  }
  const dest = words.pop() ?? ''
  return { from, sources: words, dest }
}

function newestMtime(path: string): number {
  const st = statSync(path)
  if (!st.isDirectory()) return st.mtimeMs
  let newest = 0
  for (const entry of readdirSync(path)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue
    newest = Math.max(newest, newestMtime(join(path, entry)))
  }
  return newest
}

/**
 * Builds dist/ when it is missing or older than the sources tsconfig.build.json
 * compiles. Returns the compiler's output when the build fails, as `docker build` would.
 */
function ensureBuilt(): string | undefined {
  const entry = join(root, 'dist', 'server.js')
  const sources = ['lib', 'plugins', 'routes', 'schemas']
    .map((d) => join(root, d))
    .filter((d) => existsSync(d))
    .concat(
      readdirSync(root)
        .filter((f) => f.endsWith('.ts'))
        .map((f) => join(root, f)),
    )
    .concat([join(root, 'tsconfig.json'), join(root, 'tsconfig.build.json')])
  const newestSource = Math.max(...sources.map(newestMtime))
  if (existsSync(entry) && statSync(entry).mtimeMs >= newestSource) return undefined
  try {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'pipe', timeout: 240_000 })
    return undefined
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer; message: string }
    return `${e.stdout?.toString() ?? ''}${e.stderr?.toString() ?? ''}`.slice(0, 4000) || e.message
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

if (!existsSync(join(root, 'server.ts'))) {
  t.plan(0, 'server.ts does not exist yet: nothing to run in the image')
} else {
  const stages = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'))
  const runtime = stages.at(-1) as Stage
  const app = mkdtempSync(join(tmpdir(), 'renku-notebooks-image-'))
  t.teardown(() => rmSync(app, { recursive: true, force: true }))

  let cmd: string[] = []
  const imageEnv: Record<string, string> = {}

  t.test('the Dockerfile is multi-stage with a small, non-root, tini runtime', async (t) => {
    t.ok(stages.length >= 2, 'at least a build and a runtime stage')
    t.match(runtime.base, /^node:20-(bookworm|bullseye)-slim|^node:20-alpine/, 'small node 20 base')
    const users = runtime.instructions.filter((i) => i.keyword === 'USER')
    t.equal(users.at(-1)?.args, 'node', 'runs as the node user')
    const entrypoint = runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')
    t.match(entrypoint?.args ?? '', /tini/, 'tini is PID 1')
    const cmdLine = runtime.instructions.find((i) => i.keyword === 'CMD')
    cmd = JSON.parse(cmdLine?.args ?? '[]') as string[]
    t.same(cmd, ['node', 'dist/server.js'])
    const build = stages.slice(0, -1).find((s) => s.instructions.some((i) => /npm run build/.test(i.args)))
    t.ok(build, 'a build stage runs npm run build')
    t.ok(
      build?.instructions.some(
        (i) => i.keyword === 'RUN' && /npm ci\b/.test(i.args) && !/--omit=dev/.test(i.args),
      ),
      'the build stage installs dev dependencies',
    )
    const secretish = /(TOKEN|SECRET|PASSWORD)/i
    for (const s of stages) {
      for (const i of s.instructions.filter((i) => i.keyword === 'ENV' || i.keyword === 'ARG')) {
        t.notMatch(i.args, secretish, `no secret in ${i.keyword} ${i.args}`)
      }
    }
    const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n')
    for (const entry of ['node_modules', '.git', 'dist', '.env'])
      t.ok(ignore.includes(entry), `.dockerignore has ${entry}`)
  })

  t.test('replay the runtime stage into a folder', async (t) => {
    const buildError = ensureBuilt()
    t.notOk(buildError, 'npm run build succeeds', { output: buildError })
    t.ok(existsSync(join(root, 'dist', 'server.js')), 'dist/server.js is built')
    let workdir = '/'
    let installed = false
    for (const { keyword, args } of runtime.instructions) {
      if (keyword === 'WORKDIR') workdir = posix.resolve(workdir, args)
      if (keyword === 'ENV') {
        for (const m of args.matchAll(/(\w+)=("[^"]*"|\S+)/g))
          imageEnv[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '')
      }
      if (keyword === 'COPY') {
        const { from, sources, dest } = parseCopy(args)
        const destAbs = posix.resolve(workdir, dest)
        t.ok(destAbs === workdir || destAbs.startsWith(`${workdir}/`), `COPY ${args} stays under WORKDIR`)
        const target = join(app, posix.relative(workdir, destAbs))
        for (const source of sources) {
          let local: string
          if (from) {
            const stage = stages.find((s) => s.name === from)
            t.ok(stage, `COPY --from=${from} names a stage`)
            // The build stage's WORKDIR holds the repository, so its paths map onto it.
            const inStage = posix.resolve(stage?.workdir ?? '/', source)
            local = join(root, posix.relative(stage?.workdir ?? '/', inStage))
          } else {
            t.notOk(isAbsolute(source) || source.startsWith('..'), `${source} is inside the build context`)
            local = join(root, source)
          }
          t.ok(existsSync(local), `COPY source ${source} exists`)
          const into = dest.endsWith('/') || sources.length > 1 ? join(target, basename(local)) : target
          mkdirSync(dirname(into), { recursive: true })
          cpSync(local, into, { recursive: true })
        }
      }
      if (keyword === 'RUN' && /\bnpm ci\b/.test(args)) {
        t.match(args, /--omit=dev/, 'the runtime installs production dependencies only')
        execFileSync(
          'npm',
          ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
          {
            cwd: app,
            stdio: 'pipe',
            timeout: 240_000,
          },
        )
        installed = true
      }
    }
    t.ok(installed, 'the runtime stage runs npm ci')
    t.equal(workdir, '/app', 'WORKDIR is /app')
    for (const file of [
      'dist/server.js',
      // The git-proxy sidecar of the server pods runs this image (`node dist/git-proxy/main.js`).
      'dist/git-proxy/main.js',
      'config/server-options.json',
      'package.json',
      'node_modules/fastify',
    ]) {
      t.ok(existsSync(join(app, file)), `${file} is in the image`)
    }
    for (const dev of ['typescript', 'tap', '@biomejs/biome', 'tsx']) {
      t.notOk(existsSync(join(app, 'node_modules', dev)), `dev dependency ${dev} is not in the image`)
    }
    t.notOk(existsSync(join(app, 'test')), 'tests are not in the image')
    t.ok(relative(root, app).startsWith('..'), 'the folder is outside the repository')
  })

  t.test('the image starts, is healthy, and stops on SIGTERM', async (t) => {
    const port = await freePort()
    const started = Date.now()
    // Only what the pod would have: no inherited Kubernetes or kubeconfig settings.
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: app,
      ...imageEnv,
      JUPYTERHUB_API_URL: 'http://127.0.0.1:9/hub/api',
      JUPYTERHUB_API_TOKEN: token,
      JUPYTERHUB_SERVICE_PREFIX: prefix,
      GITLAB_URL: 'http://127.0.0.1:9',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
    }
    const [command = 'node', ...args] = cmd
    const child = spawn(command === 'node' ? process.execPath : command, args, {
      cwd: app,
      env,
      stdio: 'pipe',
    })
    let output = ''
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString()
    })
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString()
    })
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })

    let status = 0
    while (Date.now() - started < 30_000 && child.exitCode === null) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}${prefix}health`, {
          signal: AbortSignal.timeout(1000),
        })
        status = res.status
        await res.arrayBuffer()
        if (status === 200) break
      } catch {
        // not listening yet
      }
      await sleep(100)
    }
    t.equal(status, 200, `GET ${prefix}health is 200`, { output })
    t.comment(`healthy ${Date.now() - started} ms after start`)

    // The readiness probe gives up after timeoutSeconds (5 in values.yaml): with the hub
    // unreachable the answer must still come in time, as a 503 naming the check.
    const readyStart = Date.now()
    const ready = await fetch(`http://127.0.0.1:${port}${prefix}ready`, {
      signal: AbortSignal.timeout(10_000),
    }).then(
      async (res) => ({
        status: res.status,
        body: (await res.json()) as { checks?: Record<string, boolean> },
      }),
      (err: Error) => ({ status: 0, body: { error: err.message } as { checks?: Record<string, boolean> } }),
    )
    const readyTook = Date.now() - readyStart
    t.equal(ready.status, 503, `GET ${prefix}ready is 503 while the hub is unreachable`, { body: ready.body })
    t.equal(ready.body.checks?.jupyterhub, false, 'the failing check is named')
    t.ok(readyTook < 5000, `readiness answers within the probe timeout (${readyTook} ms)`)

    const stopAt = Date.now()
    child.kill('SIGTERM')
    const result = await Promise.race([exited(child), sleep(10_000).then(() => null)])
    const took = Date.now() - stopAt
    t.ok(result, 'exits after SIGTERM', { output })
    t.equal(result?.code, 0, 'exit code 0', { output })
    t.ok(took < 5000, `exits promptly (${took} ms)`)
    t.notMatch(output, token, 'the API token is not in the output')
  })
}
