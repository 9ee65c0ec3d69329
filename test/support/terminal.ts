/**
 * Runs shell commands in a notebook server's terminal, as a user typing in the browser's
 * terminal does: `POST api/terminals`, then the terminal's WebSocket with `["stdin", …]`
 * messages, reading `["stdout", …]` until the command's end marker.
 */
import { WebSocket } from 'undici'

export interface Terminal {
  /** Runs one command line in the terminal's shell; resolves with its output and exit status. */
  run(command: string, timeoutMs?: number): Promise<{ output: string; status: number }>
  close(): void
}

/** Opens a new terminal on the server at `serverUrl` (ending in `/`) with the user's hub token. */
export async function openTerminal(serverUrl: string, token: string): Promise<Terminal> {
  const created = await fetch(`${serverUrl}api/terminals`, {
    method: 'POST',
    headers: { authorization: `token ${token}` },
  })
  if (created.status !== 200) throw new Error(`opening a terminal answered ${created.status}`)
  const { name } = (await created.json()) as { name: string }
  const socket = new WebSocket(`${serverUrl.replace(/^http/, 'ws')}terminals/websocket/${name}`, {
    headers: { authorization: `token ${token}` },
  })
  let output = ''
  let waiter: (() => void) | undefined
  socket.addEventListener('message', (event) => {
    const [kind, text] = JSON.parse(String(event.data)) as [string, string]
    if (kind === 'stdout') output += text
    waiter?.()
  })
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true })
    socket.addEventListener('error', () => reject(new Error('the terminal WebSocket failed')), { once: true })
  })
  let count = 0
  return {
    async run(command, timeoutMs = 20_000) {
      const marker = `END-${++count}-${Date.now()}`
      // Split in the typed line, whole in the output: the echo of the line never matches.
      const done = new RegExp(`${marker}:(\\d+)`)
      const from = output.length
      socket.send(
        JSON.stringify(['stdin', `${command}; echo "${marker.slice(0, 4)}""${marker.slice(4)}:$?"\r`]),
      )
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const match = done.exec(output.slice(from))
        if (match) {
          const text = output.slice(from, from + (match.index ?? 0))
          return { output: text, status: Number(match[1]) }
        }
        if (Date.now() > deadline)
          throw new Error(`"${command}" did not finish in the terminal:\n${output.slice(from)}`)
        await new Promise<void>((resolve) => {
          waiter = resolve
          setTimeout(resolve, 200)
        })
      }
    },
    close() {
      socket.close()
    },
  }
}
