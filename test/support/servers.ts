/** Launching and stopping through the service in the end-to-end stack, and waiting for the outcome. */
import { type Call, eventually } from '../../dev/stack.js'
import type { ServerObject } from '../../schemas/servers.js'

/** Polls the service until the server is `running`; returns its object. */
export function untilRunning(
  call: Call,
  name: string,
  what = `${name} to be running`,
  timeoutMs = 60_000,
): Promise<ServerObject> {
  return eventually(
    async () => {
      const { status, body } = await call<ServerObject>('GET', `servers/${name}`)
      return status === 200 && body.status.state === 'running' ? body : undefined
    },
    timeoutMs,
    what,
  )
}

/** Launches a server through the service (201 or 202, else it throws) and waits until it runs. */
export async function launchRunning(call: Call, body: Record<string, unknown>): Promise<ServerObject> {
  const started = await call<ServerObject>('POST', 'servers', body)
  if (![201, 202].includes(started.status)) {
    throw new Error(`launch answered ${started.status}: ${JSON.stringify(started.body)}`)
  }
  return untilRunning(call, started.body.name)
}

/** Stops a server through the service (202 or 204, else it throws) and waits until it is gone. */
export async function stopGone(call: Call, name: string): Promise<void> {
  const stopped = await call('DELETE', `servers/${name}`)
  if (![202, 204].includes(stopped.status)) throw new Error(`stop answered ${stopped.status}`)
  await eventually(
    async () => ((await call('GET', `servers/${name}`)).status === 404 ? true : undefined),
    60_000,
    `${name} to be gone`,
  )
}
