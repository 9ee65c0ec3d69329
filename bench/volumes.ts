/**
 * Launch-to-ready of a server on a new session volume (clone) against a resumed one (no
 * clone), in the same run of the local stack: `npx tsx bench/volumes.ts [rounds]`.
 */
import { eventually, startStack } from '../dev/stack.js'
import type { ServerObject } from '../schemas/servers.js'

const rounds = Number(process.argv[2] ?? 5)
const stack = await startStack({ serviceEnv: { NOTEBOOKS_SESSION_VOLUMES: 'true' } })
const call = stack.as(stack.users.developer)
const body = {
  namespace: 'demo-group',
  project: 'demo-project',
  commit_sha: stack.world.commits.demo.masterFirst,
}

/** Seconds from the launch request to the server object saying `running`. */
async function launch(): Promise<{ seconds: number; server: ServerObject }> {
  const started = performance.now()
  const answer = await call<ServerObject>('POST', 'servers', body)
  const server = await eventually(
    async () => {
      const { status, body } = await call<ServerObject>('GET', `servers/${answer.body.name}`)
      return status === 200 && body.status.state === 'running' ? body : undefined
    },
    60_000,
    'the server to run',
  )
  return { seconds: (performance.now() - started) / 1000, server }
}

async function stop(name: string): Promise<void> {
  await call('DELETE', `servers/${name}`)
  await eventually(
    async () => ((await call('GET', `servers/${name}`)).status === 404 ? true : undefined),
    60_000,
  )
}

const times = { new: [] as number[], resumed: [] as number[] }
try {
  for (let round = 0; round < rounds; round++) {
    const fresh = await launch()
    if (fresh.server.annotations['renku.io/volume'] !== 'new') throw new Error('expected a new volume')
    times.new.push(fresh.seconds)
    await stop(fresh.server.name)
    const resumed = await launch()
    if (resumed.server.annotations['renku.io/volume'] !== 'resumed') throw new Error('expected a resume')
    times.resumed.push(resumed.seconds)
    await stop(resumed.server.name)
    const deleted = await call('DELETE', `demo-group/demo-project/autosave/${resumed.server.name}`)
    if (deleted.status !== 204) throw new Error(`deleting the volume answered ${deleted.status}`)
  }
} finally {
  await stack.stop()
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN
const line = (what: keyof typeof times) =>
  `${what.padEnd(8)} median ${median(times[what]).toFixed(2)} s  (${times[what].map((s) => s.toFixed(2)).join(', ')})`
process.stdout.write(`launch to ready, ${rounds} rounds each:\n${line('new')}\n${line('resumed')}\n`)
