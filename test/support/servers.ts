/** Launching through the service in the end-to-end stack, and waiting for the server to run. */
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
  if (![201, 202].includes(started.status)) throw new Error(`launch answered ${started.status}`)
  return untilRunning(call, started.body.name)
}
