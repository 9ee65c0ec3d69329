/**
 * Session volumes over the real hub and real notebook servers: with `NOTEBOOKS_SESSION_VOLUMES`
 * on, a stopped server's working directory is kept — ignored files, local commits and the index
 * included — and its next launch resumes on it instead of cloning and restoring an autosave.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import type { HubUser } from '../../dev/hub.js'
import { eventually, startStack } from '../../dev/stack.js'
import { autosaveBranches, seedAutosave } from '../support/autosaves.js'
import { launchRunning } from '../support/servers.js'
import { openTerminal } from '../support/terminal.js'

const stack = await startStack({ serviceEnv: { NOTEBOOKS_SESSION_VOLUMES: 'true' } })
t.teardown(() => stack.stop())

const { world, users, hub } = stack
const { masterFirst } = world.commits.demo
const project = world.projects.demo
const demo = { namespace: 'demo-group', project: 'demo-project' }
const volumeDir = (server: string) => path.join(hub.runDir, 'volumes', 'developer', server)
const workTree = (server: string) => path.join(volumeDir(server), 'demo-project')
const developer = stack.as(users.developer)

interface AutosaveEntry {
  name: string
  branch: string
  commit: string
  date: string
  pvs: boolean
}

const launch = (user: HubUser) => launchRunning(stack.as(user), { ...demo, commit_sha: masterFirst })

async function gone(name: string): Promise<void> {
  await eventually(
    async () => ((await developer('GET', `servers/${name}`)).status === 404 ? true : undefined),
    60_000,
    `${name} to be gone`,
  )
}

const listed = async () =>
  (
    await developer<{ pvsSupport: boolean; autosaves: AutosaveEntry[] }>(
      'GET',
      'demo-group/demo-project/autosave',
    )
  ).body

let serverName = ''

t.test('a stopped server keeps its working directory, listed beside the autosaves', async (t) => {
  const server = await launch(users.developer)
  serverName = server.name
  t.equal(server.annotations['renku.io/volume'], 'new', 'a new volume')
  const terminal = await openTerminal(server.url, users.developer.token)
  t.teardown(() => terminal.close())
  const git = 'git -c user.name=Dee -c user.email=dee@example.com'
  for (const command of [
    `cd '${workTree(server.name)}'`,
    // Ignored by the project's .gitignore? Make sure: an ignored data folder of its own.
    "mkdir -p data && printf 'weights\\n' > data/model.bin && printf 'data/\\n' >> .git/info/exclude",
    `printf 'local\\n' > local.md && ${git} add local.md && ${git} commit -q -m 'Local commit'`,
    `printf 'staged\\n' > staged.md && ${git} add staged.md`,
  ]) {
    const { exitCode: status, output } = await terminal.run(command)
    t.equal(status, 0, `ran: ${command.slice(0, 40)}… ${status === 0 ? '' : output}`)
  }
  const head = (await terminal.run(`${git} rev-parse HEAD`)).output.trim().split(/\s+/).at(-1) as string

  const stopped = await developer('DELETE', `servers/${server.name}`)
  t.ok([202, 204].includes(stopped.status), `stopped (${stopped.status})`)
  await gone(server.name)
  // The safety net still runs: the autosave branch of this launch.
  const saves = await eventually(async () => {
    const names = await autosaveBranches(project)
    return names.length > 0 ? names : undefined
  })
  t.match(saves[0], `renku/autosave/developer/master/${masterFirst.slice(0, 7)}/${head.slice(0, 7)}`)

  const list = await listed()
  t.equal(list.pvsSupport, true, 'pvsSupport is on')
  const volume = list.autosaves.find((a) => a.pvs)
  t.match(volume, { name: server.name, branch: 'master', commit: masterFirst.slice(0, 7), pvs: true })
  t.ok(Date.now() - Date.parse(volume?.date ?? '') < 60_000, 'dated when the server stopped')
  t.ok(
    list.autosaves.some((a) => !a.pvs),
    'beside the autosave branch',
  )
  t.ok(existsSync(path.join(workTree(server.name), 'data', 'model.bin')), 'the directory is kept')
})

t.test('launching it again resumes the volume as it was left', async (t) => {
  // An older autosave of the same launch too: the volume wins, and both are discarded.
  await seedAutosave(project, {
    user: 'developer',
    branch: 'master',
    commitSha: masterFirst,
    files: { 'old.md': 'old\n' },
    date: '2026-01-01T00:00:00Z',
  })
  const server = await launch(users.developer)
  t.equal(server.name, serverName, 'the same server')
  t.equal(server.annotations['renku.io/volume'], 'resumed', 'the server object says it resumed')
  t.notOk(server.annotations['renku.io/autosave'], 'no autosave restored')
  t.notOk((await hub.spawnedOptions('developer', server.name))?.autosave, 'none passed to the spawner')

  const terminal = await openTerminal(server.url, users.developer.token)
  t.teardown(() => terminal.close())
  await terminal.run(`cd '${workTree(server.name)}'`)
  t.match((await terminal.run('cat data/model.bin')).output, /^weights\r?$/m, 'the ignored file')
  t.match((await terminal.run('git log -1 --format=%s')).output, 'Local commit', 'the local commit')
  t.match((await terminal.run('git diff --cached --name-only')).output, 'staged.md', 'the index')
  t.notOk(existsSync(path.join(workTree(server.name), 'old.md')), 'nothing of the autosave')
  t.match(await readFile(hub.serverLogPath('developer', server.name), 'utf8'), 'prepared by an earlier run')
  await eventually(
    async () => ((await autosaveBranches(project)).length === 0 ? true : undefined),
    10_000,
    'autosaves to go',
  )
  t.pass("the launch's autosave branches are gone")
  t.notOk(
    (await listed()).autosaves.some((a) => a.pvs),
    'a running server’s volume is not listed as kept',
  )

  const busy = await developer('DELETE', `demo-group/demo-project/autosave/${server.name}`)
  t.equal(busy.status, 409, 'deleting it while the server runs is refused')
  t.equal(busy.body.error?.code ?? busy.body.code, 'SERVER_BUSY')
})

t.test('a stop at the hub that removes the server keeps the volume too; then it is deleted', async (t) => {
  const removed = await hub.admin('DELETE', `/users/developer/servers/${serverName}`, { remove: true })
  t.ok([202, 204].includes(removed.status), `removed at the hub (${removed.status})`)
  await gone(serverName)
  const kept = await eventually(async () => {
    const volume = (await listed()).autosaves.find((a) => a.pvs)
    return volume ? volume : undefined
  })
  t.equal(kept.name, serverName, 'still listed')

  const other = await stack.as(users.maintainer)('DELETE', `demo-group/demo-project/autosave/${serverName}`)
  t.equal(other.status, 404, "another user's volume is not found")
  t.ok(existsSync(volumeDir(serverName)))

  const deleted = await developer('DELETE', `demo-group/demo-project/autosave/${serverName}`)
  t.equal(deleted.status, 204, 'deleted')
  t.notOk(existsSync(volumeDir(serverName)), 'the directory is gone')
  t.notOk(
    (await listed()).autosaves.some((a) => a.pvs),
    'no longer listed',
  )
  for (const branch of await autosaveBranches(project)) {
    t.equal((await developer('DELETE', `demo-group/demo-project/autosave/${branch}`)).status, 204)
  }

  const fresh = await launch(users.developer)
  t.equal(fresh.annotations['renku.io/volume'], 'new', 'the next launch is a new volume')
  t.notOk(existsSync(path.join(workTree(fresh.name), 'local.md')), 'a fresh clone')
  t.match(await readFile(hub.serverLogPath('developer', fresh.name), 'utf8'), /checked out master at/)
  await developer('DELETE', `servers/${fresh.name}`)
  await gone(fresh.name)
})
