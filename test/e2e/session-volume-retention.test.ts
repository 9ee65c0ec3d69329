/**
 * Retention of session volumes over the real hub: with a short retention, the volume of a server
 * stopped for longer is deleted by the service's sweep; a running server's volume never is.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { eventually, startStack } from '../../dev/stack.js'
import type { ServerObject } from '../../schemas/servers.js'
import { build } from '../helper.js'
import { untilRunning } from '../support/servers.js'

const RETENTION_HOURS = 0.003 // 10.8 s; the sweep runs every 2.7 s
const stack = await startStack({
  serviceEnv: {
    NOTEBOOKS_SESSION_VOLUMES: 'true',
    NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS: String(RETENTION_HOURS),
  },
})
t.teardown(() => stack.stop())
const { world, users, hub } = stack
const developer = stack.as(users.developer)
const volumeDir = (server: string) => path.join(hub.runDir, 'volumes', 'developer', server)

async function launch(commitSha: string): Promise<ServerObject> {
  const started = await developer<ServerObject>('POST', 'servers', {
    namespace: 'demo-group',
    project: 'demo-project',
    commit_sha: commitSha,
  })
  return untilRunning(developer, started.body.name, 'the server to run')
}

t.test("a stopped server's volume goes after the retention, a running one's stays", async (t) => {
  const stopped = await launch(world.commits.demo.masterFirst)
  await developer('DELETE', `servers/${stopped.name}`)
  await eventually(async () =>
    (await developer('GET', `servers/${stopped.name}`)).status === 404 ? true : undefined,
  )
  t.ok(existsSync(volumeDir(stopped.name)), 'kept at first')

  const running = await launch(world.commits.demo.masterSecond)
  const runningSince = Date.now()
  await eventually(async () => (existsSync(volumeDir(stopped.name)) ? undefined : true), 40_000, 'the sweep')
  t.pass("the stopped server's volume was deleted")
  // Past the retention and a sweep more, measured from the running server's start.
  const wait = RETENTION_HOURS * 3_600_000 + 4000 - (Date.now() - runningSince)
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  t.ok(existsSync(path.join(volumeDir(running.name), 'demo-project', '.git')), "the running server's stays")
  t.equal((await developer<ServerObject>('GET', `servers/${running.name}`)).body.status.state, 'running')
  await developer('DELETE', `servers/${running.name}`)
})

t.test('session volumes with nowhere to keep them stop start-up with one clear line', async (t) => {
  await t.rejects(build(t, { NOTEBOOKS_SESSION_VOLUMES: 'true' }), {
    name: 'ConfigError',
    message: /^NOTEBOOKS_SESSION_VOLUMES is true, but the volumes have nowhere to live/,
  })
})
