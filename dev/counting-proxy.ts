/**
 * A transparent HTTP proxy in front of an upstream that counts requests and connections,
 * and can answer a few requests itself with a gateway error — to check what a client
 * sends to a real upstream, not what a mock was told.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface CountingProxy {
  url: string
  /** `METHOD path` of each request passed on or answered. */
  requests: string[]
  /** TCP connections the client opened. */
  connections: number
  /** Requests whose answer is still open (e.g. event streams). */
  open: number
  /**
   * Answer the next `count` requests matching `path` with `status` instead of passing them on;
   * status 0 drops the connection without an answer.
   */
  failNext(path: RegExp, status: number, count?: number): void
  /** Pass the next `count` requests matching `path` on only after `ms` milliseconds. */
  delayNext(path: RegExp, ms: number, count?: number): void
  /** While offline, every request has its connection dropped, as when the upstream is gone. */
  setOffline(offline: boolean): void
  close(): Promise<void>
}

export async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream)
  const failures: { path: RegExp; status: number; left: number }[] = []
  const delays: { path: RegExp; ms: number; left: number }[] = []
  let offline = false
  const agent = new http.Agent({ keepAlive: true })
  const proxy: CountingProxy = {
    url: '',
    requests: [],
    connections: 0,
    open: 0,
    failNext(path, status, count = 1) {
      failures.push({ path, status, left: count })
    },
    delayNext(path, ms, count = 1) {
      delays.push({ path, ms, left: count })
    },
    setOffline(value) {
      offline = value
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
        agent.destroy()
      }),
  }
  const server = http.createServer((req, res) => {
    if (offline) {
      req.socket.destroy()
      return
    }
    const delay = delays.find((d) => d.left > 0 && d.path.test(req.url ?? ''))
    if (!delay) return pass(req, res)
    delay.left--
    setTimeout(() => pass(req, res), delay.ms)
  })
  const pass = (req: http.IncomingMessage, res: http.ServerResponse) => {
    proxy.requests.push(`${req.method} ${req.url}`)
    proxy.open++
    res.on('close', () => {
      proxy.open--
    })
    const failure = failures.find((f) => f.left > 0 && f.path.test(req.url ?? ''))
    if (failure) {
      failure.left--
      req.resume()
      if (failure.status === 0) {
        req.socket.destroy()
        return
      }
      res.writeHead(failure.status, { 'content-type': 'text/html' }).end('<html>Bad Gateway</html>')
      return
    }
    const forward = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: target.host },
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    forward.on('error', () => res.writeHead(502).end())
    req.pipe(forward)
  }
  server.on('connection', () => {
    proxy.connections++
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return proxy
}
