/**
 * A GitLab stand-in for the proxy's tests: git smart HTTP through `git http-backend` (CGI) for
 * repositories under one directory, Basic authentication required as GitLab does, a Git LFS batch
 * endpoint, and a record of the Authorization header of every request.
 */
import { spawn } from 'node:child_process'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'

export interface SeenRequest {
  method: string
  path: string
  authorization: string | undefined
  bodyBytes: number
}

export interface Upstream {
  url: string
  port: number
  seen: SeenRequest[]
  close(): Promise<void>
}

export interface UpstreamOptions {
  /** Directory holding bare repositories, e.g. `<root>/ns/project.git`. */
  projectRoot: string
  tls?: { cert: string; key: string }
  /** Replaces the default handling for paths it claims (returns true). */
  custom?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => boolean
}

function gitHttpBackend(
  projectRoot: string,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
) {
  const url = new URL(req.url ?? '/', 'http://upstream')
  const cgi = spawn('/usr/bin/git', ['http-backend'], {
    env: {
      GIT_PROJECT_ROOT: projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: req.method ?? 'GET',
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      CONTENT_LENGTH: String(body.length),
      REMOTE_USER: 'oauth2',
      REMOTE_ADDR: '127.0.0.1',
      GIT_CONFIG_GLOBAL: '/dev/null',
    },
  })
  const out: Buffer[] = []
  cgi.stdout.on('data', (chunk: Buffer) => out.push(chunk))
  cgi.stdin.end(body)
  cgi.on('close', () => {
    const all = Buffer.concat(out)
    const split = all.indexOf('\r\n\r\n')
    const head = all.subarray(0, split).toString('latin1')
    let status = 200
    for (const line of head.split('\r\n')) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon).trim()
      const value = line.slice(colon + 1).trim()
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10)
      else res.setHeader(name, value)
    }
    res.writeHead(status)
    res.end(all.subarray(split + 4))
  })
}

export async function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  const seen: SeenRequest[] = []
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({
        method: req.method ?? '',
        path: req.url ?? '',
        authorization: req.headers.authorization,
        bodyBytes: body.length,
      })
      if (options.custom?.(req, res, body)) return
      if (!req.headers.authorization) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="GitLab"', 'content-type': 'text/plain' })
        res.end('HTTP Basic: Access denied\n')
        return
      }
      gitHttpBackend(options.projectRoot, req, res, body)
    })
  }
  const server = options.tls ? https.createServer(options.tls, handler) : http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
