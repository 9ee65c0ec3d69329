/**
 * `npm run stack` as a newcomer runs it: the banner says where the API docs are and how to
 * follow a launch, the service prefix leads to the docs, and a SIGTERM sent to npm's own PID
 * (as a script stopping it would) stops everything, leaving no process behind.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { stat } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { processesWithEnv } from '../../dev/processes.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..')

/** PIDs of the processes carrying `marker` in their environment: all the stack started. */
const marked = (marker: string) => processesWithEnv('STACK_TEST_MARKER', marker)

t.test('npm run stack: docs in the banner, and SIGTERM to npm stops it all', async (t) => {
  // The stack installs dependencies first when they are stale; not in the middle of a test run.
  const lock = await stat(path.join(ROOT, 'package-lock.json'))
  const installed = await stat(path.join(ROOT, 'node_modules', '.package-lock.json'))
  if (lock.mtimeMs > installed.mtimeMs) {
    t.fail('node_modules is older than package-lock.json: run `npm ci` first')
    return
  }

  // Every process the stack starts inherits the marker (the hub's proxy leaves the process group).
  const marker = randomBytes(8).toString('hex')
  const npm = spawn('npm', ['run', 'stack'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn', STACK_TEST_MARKER: marker },
  })
  t.teardown(async () => {
    // Whatever is left of what this test started, by PID.
    for (const pid of await marked(marker)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
  let output = ''
  npm.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8')
  })
  npm.stderr.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8')
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    npm.once('exit', (code, signal) => resolve({ code, signal })),
  )

  const deadline = Date.now() + 120_000
  while (!/list your servers:\n\n.*\n/.test(output)) {
    if (Date.now() > deadline || npm.exitCode !== null) {
      t.fail(`the stack did not start:\n${output.slice(-2000)}`)
      return
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }

  const docs = /API docs\s+(\S+)/.exec(output)?.[1] ?? ''
  t.match(docs, /^http:\/\/127\.0\.0\.1:\d+\/services\/notebooks\/docs$/, 'the banner shows the API docs')
  t.match(
    output,
    /until "ready" is true:\n\n\s+curl -sS '\S+\/servers\/demo-project-[0-9a-f]{8}'/,
    'how to poll',
  )
  t.match(
    output,
    /checked out master at [0-9a-f]{40}.*\n\n\s+curl -sS '\S+\/logs\/demo-project-[0-9a-f]{8}'/,
    'the log',
  )
  const prefix = await fetch(docs.replace(/docs$/, ''), { redirect: 'manual' })
  t.equal(prefix.status, 302, 'the service prefix redirects')
  t.equal(new URL(prefix.headers.get('location') ?? '', docs).href, docs, '… to the docs')

  const before = await marked(marker)
  t.ok(before.length >= 4, 'npm, the stack, the hub and its proxy run')
  process.kill(npm.pid as number, 'SIGTERM')
  const timeout = setTimeout(() => t.fail('the stack did not stop within 60 s'), 60_000)
  const { code } = await exited
  clearTimeout(timeout)
  t.equal(code, 0, 'npm exits 0')
  t.match(output, /Stopping the local stack/)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.same(await marked(marker), [], 'no process is left behind')
})
