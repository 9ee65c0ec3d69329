import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { hostname } from 'node:os'

// Ports handed out by this process, so parallel callers in one process never get the same one.
const handedOut = new Set<number>()

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Another process may still take it
 * before it is used: callers that bind it through a child process should retry on EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer()
      server.unref()
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        const address = server.address()
        const p = typeof address === 'object' && address ? address.port : 0
        server.close(() => resolve(p))
      })
    })
    if (port !== 0 && !handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('no free port found')
}

/**
 * A name of this machine that resolves to a loopback address without being `localhost` or an IP
 * address (its host name, which /etc/hosts maps to 127.0.0.1 or 127.0.1.1 on Debian), or
 * undefined. Go programs such as git-lfs never send requests for `localhost` or a loopback IP
 * through a proxy; for such a name they do, as for a real GitLab host.
 */
export async function loopbackAlias(): Promise<{ host: string; address: string } | undefined> {
  const host = hostname()
  if (!host || host === 'localhost' || net.isIP(host)) return undefined
  try {
    const { address } = await lookup(host, { family: 4 })
    return address.startsWith('127.') ? { host, address } : undefined
  } catch {
    return undefined
  }
}
