/**
 * A notebook server's own terminal, as JupyterLab and the classic notebook use it: `POST
 * <server>/api/terminals` makes one, and its WebSocket `<server>/terminals/websocket/<name>`
 * carries JSON arrays (`["stdin", text]` in, `["stdout", text]` out).
 */
import { WebSocket } from 'undici'

export interface CommandResult {
  /** What the terminal printed after the command line, without colours and the sentinel. */
  output: string
  exitCode: number
}

export interface Terminal {
  name: string
  /** Types `command` and Enter, waits until it is done; fails after `timeoutMs`. */
  run(command: string, timeoutMs?: number): Promise<CommandResult>
  close(): Promise<void>
}

// Colours, cursor moves and bracketed paste: not what the command printed.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the terminal's escape sequences
const ESCAPES = /\u001b\[[0-9;?]*[A-Za-z]|\u001b\][^\u0007]*\u0007|\r/g

/** Opens a new terminal in the server at `serverUrl` (ending in `/`) as the hub user of `token`. */
export async function openTerminal(serverUrl: string, token: string): Promise<Terminal> {
  const created = await fetch(new URL('api/terminals', serverUrl), {
    method: 'POST',
    headers: { authorization: `token ${token}` },
  })
  const body = (await created.json().catch(() => ({}))) as { name?: string }
  if (created.status !== 200 || !body.name) throw new Error(`POST api/terminals answered ${created.status}`)
  const name = body.name

  const wsUrl = new URL(`terminals/websocket/${encodeURIComponent(name)}`, serverUrl)
  wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:'
  const socket = new WebSocket(wsUrl, { headers: { authorization: `token ${token}` } })
  let received = ''
  let waiting: (() => void) | undefined
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as [string, ...unknown[]]
    if (message[0] === 'stdout') {
      received += String(message[1])
      waiting?.()
    }
  })
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true })
    socket.addEventListener('error', () => reject(new Error(`terminal WebSocket ${name} failed`)), {
      once: true,
    })
  })
  // Quiet prompts and no paging: output as a script would see it. A git that asks for a
  // password (it never should) fails at once instead of waiting for the test's timeout.
  socket.send(
    JSON.stringify(['stdin', "export PS1='$ ' GIT_PAGER=cat PAGER=cat TERM=dumb GIT_TERMINAL_PROMPT=0\r"]),
  )

  let commands = 0
  return {
    name,
    async run(command, timeoutMs = 60_000) {
      const id = ++commands
      // `$?` in the line typed is not a number; the shell's answer is.
      const sentinel = new RegExp(`__done_${id}_(\\d+)__`)
      const start = received.length
      socket.send(JSON.stringify(['stdin', `${command}; echo __done_${id}_$?__\r`]))
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const text = received.slice(start).replace(ESCAPES, '')
        const done = sentinel.exec(text)
        if (done) {
          // After the line the terminal echoed (it holds the sentinel unexpanded). A line typed
          // while the shell was busy is echoed twice, by the terminal and again by the shell.
          const typed = text.lastIndexOf(`echo __done_${id}_$?__`, done.index)
          const from = typed < 0 ? 0 : text.indexOf('\n', typed) + 1
          return { output: text.slice(from, done.index), exitCode: Number(done[1]) }
        }
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`terminal: \`${command}\` did not finish; it printed:\n${text}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 500))
          waiting = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    },
    async close() {
      socket.close()
      await fetch(new URL(`api/terminals/${encodeURIComponent(name)}`, serverUrl), {
        method: 'DELETE',
        headers: { authorization: `token ${token}` },
      })
        .then((r) => r.arrayBuffer())
        .catch(() => {})
    },
  }
}
