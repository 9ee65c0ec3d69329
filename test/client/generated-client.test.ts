/**
 * The generated client: `client/generated/openapi.d.ts` matches the routes (regenerated in
 * memory), and `client/example.ts`, typed by it (the repository's typecheck compiles it), runs
 * as a program against the service with a real hub and the GitLab stand-in.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startStack } from '../../dev/stack.js'
import { GENERATED_PATH, generateClientTypes } from '../../scripts/generate-client.js'

const execFileAsync = promisify(execFile)
const ROOT = path.resolve(import.meta.dirname, '..', '..')

t.test('client/generated/openapi.d.ts is up to date', async (t) => {
  const fresh = await generateClientTypes()
  const committed = await readFile(GENERATED_PATH, 'utf8')
  t.ok(fresh === committed, 'stale: run `npm run generate:client` and commit the result')
  t.match(committed, /"\/servers\/\{server_name\}"/)
  t.match(committed, /launchServer: \{/)
  t.match(committed, /"\/\{namespace\}\/\{project\}\/autosave\/\{name\}"/)
})

t.test('the example program launches, follows the progress, lists, reads logs and stops', async (t) => {
  const stack = await startStack()
  t.teardown(() => stack.stop())
  const { world, users } = stack
  const { stdout, stderr } = await execFileAsync(
    process.execPath,
    [
      '--import',
      'tsx',
      'client/example.ts',
      world.projects.demo.namespace.fullPath,
      world.projects.demo.path,
      world.commits.demo.masterSecond,
    ],
    {
      cwd: ROOT,
      env: { ...process.env, NOTEBOOKS_URL: stack.serviceUrl, JUPYTERHUB_TOKEN: users.developer.token },
      timeout: 120_000,
    },
  ).catch((err: { stdout?: string; stderr?: string; message: string }) => {
    t.fail(`the example failed: ${err.stderr || err.message}`)
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '' }
  })
  t.equal(stderr.trim(), '', 'nothing on stderr')
  t.match(stdout, /^launch: 20[12] demo-project-[0-9a-f]{8} /m, 'launched (201 or 202)')
  t.match(
    stdout,
    /^progress: ready \(100%\) Your server is ready\.$/m,
    'followed the progress stream to its ready event (the only one when the launch answered 201)',
  )
  t.match(stdout, /^ready: /m)
  t.match(stdout, /^servers of demo-project: demo-project-[0-9a-f]{8}/m, 'listed')
  t.match(stdout, /^last \d+ log lines:/m)
  t.match(stdout, /^stop: 20[24]$/m, 'stopped')
  t.match(stdout, /^autosaves of demo-project: 0$/m, 'nothing to save, nothing saved')
  t.notMatch(stdout, new RegExp(users.developer.token), 'the token is never printed')

  const after = await stack.as(users.developer)('GET', 'servers')
  t.same(after.body, { servers: {} }, 'no server left')
})
