/**
 * The import graph keeps its layers (.dependency-cruiser.cjs says which): nothing imports
 * upwards or in a cycle, the service never imports the harness, the proxy stands alone.
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const ROOT = path.resolve(import.meta.dirname, '..')
const SOURCES = [
  'app.ts',
  'server.ts',
  'sweep-volumes.ts',
  'lib',
  'plugins',
  'routes',
  'schemas',
  'git-proxy',
  'dev',
  'bench',
  'scripts',
  'test',
]

t.test('no import runs back up a layer, and there are no cycles', async (t) => {
  const cruise = await promisify(execFile)(
    path.join(ROOT, 'node_modules', '.bin', 'depcruise'),
    ['-c', '.dependency-cruiser.cjs', '--output-type', 'json', ...SOURCES],
    { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
  ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
  const { summary } = JSON.parse(cruise.stdout) as {
    summary: { violations: Array<{ rule: { name: string }; from: string; to: string }>; totalCruised: number }
  }
  t.ok(summary.totalCruised > 100, `the whole tree was read (${summary.totalCruised} modules)`)
  t.same(
    summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`),
    [],
  )
})
