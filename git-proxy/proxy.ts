/**
 * A forward proxy for git and git-lfs that adds the user's GitLab credentials to requests for
 * one repository and to nothing else (see git-proxy/README.md). Plain http:// GitLab: git sends
 * absolute-form requests. https:// GitLab: git sends CONNECT; the proxy terminates TLS with a
 * certificate from its own in-memory CA, reads the requests and forwards them over verified TLS.
 */
import { readFile, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream'
import tls from 'node:tls'
import { Agent, errors as undiciErrors } from 'undici'
import { createCertificateAuthority } from './certificates.js'
import { isLfsBatchPath, stripActionCredentials } from './lfs.js'
import {
  isInsideRepository,
  isRepositoryHost,
  parseRepositoryUrl,
  type Repository,
} from './repository-scope.js'

export interface GitProxyOptions {
  /** The project's `http_url_to_repo`. */
  repositoryUrl: string
  /** A file holding the user's GitLab OAuth token; read for every request that needs it. */
  tokenFile: string
  /** Port on 127.0.0.1; 0 picks a free one. */
  port: number
  /** Where to write the CA certificate git must trust (https:// repositories only). */
  caFile?: string
  /** How long GitLab may take to send the answer's headers, in milliseconds. */
  headersTimeoutMs: number
  /** Extra CA certificates (PEM) to trust for GitLab, besides the system's. */
  upstreamCa?: string[]
  /** One line per request and per notable event. */
  log?: (line: string) => void
}

export interface GitProxy {
  port: number
  /** The CA certificate (PEM) for git's `sslCAInfo`, for https:// repositories. */
  caCertificatePem?: string
  /** Requests not yet answered to the end. */
  inFlight(): number
  /** Stops accepting, waits for requests in flight, then closes every connection. */
  close(): Promise<void>
}

// Headers about one connection, which a proxy must not pass on (RFC 9110 7.6.1), plus those
// undici sets itself or refuses.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
])
// The batch answer is small JSON, read whole to strip credentials; anything larger is refused.
const MAX_BATCH_ANSWER_BYTES = 16 * 1024 * 1024

class ProxyRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

function forwardableHeaders(headers: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const result: Record<string, string | string[]> = {}
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase()),
  )
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name)) continue
    result[name] = value
  }
  return result
}

function answerText(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = `${message}\n`
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

async function readToken(tokenFile: string): Promise<string | undefined> {
  try {
    return (await readFile(tokenFile, 'utf8')).trim() || undefined
  } catch {
    return undefined
  }
}

async function readAll(body: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > limit) throw new Error(`Git LFS batch answer larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

export async function startGitProxy(options: GitProxyOptions): Promise<GitProxy> {
  const repository: Repository = parseRepositoryUrl(options.repositoryUrl)
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`))
  const gitlab = `GitLab (${repository.origin})`
  const timeoutSeconds = options.headersTimeoutMs / 1000

  const authority = repository.protocol === 'https:' ? createCertificateAuthority() : undefined
  if (authority) {
    if (!options.caFile) throw new Error('an https:// repository needs a file to write the CA certificate to')
    // Public data only: the CA's private key stays in this process.
    await writeFile(options.caFile, authority.certificatePem, { mode: 0o644 })
  }
  const leaf = authority?.leafFor(repository.hostname)
  const secureContext = leaf
    ? tls.createSecureContext({ cert: leaf.certificatePem, key: leaf.keyPem })
    : undefined

  const upstream = new Agent({
    headersTimeout: options.headersTimeoutMs,
    connect: {
      timeout: options.headersTimeoutMs,
      // Without `ca` undici trusts the system store plus NODE_EXTRA_CA_CERTS; `ca` replaces it.
      ...(options.upstreamCa ? { ca: [...tls.rootCertificates, ...options.upstreamCa] } : {}),
    },
  })

  let inFlight = 0
  let drained: (() => void) | undefined

  async function forward(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<string> {
    const path = url.pathname
    const credentials = isInsideRepository(repository, path)
    const headers = forwardableHeaders(req.headers)
    if (credentials) {
      const token = await readToken(options.tokenFile)
      if (!token) {
        throw new ProxyRefusal(
          503,
          `git proxy: no GitLab token for this server yet (${options.tokenFile} is empty)`,
        )
      }
      headers.authorization = `Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}`
    }
    // Outside the repository the client's own Authorization, if any, passes unchanged: it is
    // the client's, and git may need it for another project on the same GitLab (a submodule).
    const lfsBatch = credentials && req.method === 'POST' && isLfsBatchPath(path)
    // The batch answer must arrive uncompressed to be read and cleaned.
    if (lfsBatch) delete headers['accept-encoding']
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined

    let answer: Awaited<ReturnType<Agent['request']>>
    try {
      answer = await upstream.request({
        origin: repository.origin,
        path: `${path}${url.search}`,
        method: (req.method ?? 'GET') as 'GET',
        headers,
        body: hasBody ? req : null,
      })
    } catch (error) {
      if (
        error instanceof undiciErrors.HeadersTimeoutError ||
        error instanceof undiciErrors.ConnectTimeoutError
      ) {
        throw new ProxyRefusal(504, `git proxy: ${gitlab} did not answer within ${timeoutSeconds} s`)
      }
      const reason =
        error instanceof Error
          ? ((error.cause as Error | undefined)?.message ?? error.message)
          : String(error)
      throw new ProxyRefusal(502, `git proxy: ${gitlab} is unreachable: ${reason}`)
    }

    const { statusCode, body } = answer
    if (credentials && statusCode === 401) {
      // Passing the 401 on would make git ask for a password it cannot know.
      body.resume()
      throw new ProxyRefusal(
        503,
        `git proxy: ${gitlab} refused this server's credentials (the token expired and was not refreshed?)`,
      )
    }
    const responseHeaders = forwardableHeaders(answer.headers as http.IncomingHttpHeaders)
    if (lfsBatch && statusCode === 200) {
      if (responseHeaders['content-encoding']) {
        body.resume()
        throw new ProxyRefusal(502, `git proxy: ${gitlab} sent a compressed Git LFS batch answer`)
      }
      let cleaned: Buffer
      try {
        const parsed = JSON.parse((await readAll(body, MAX_BATCH_ANSWER_BYTES)).toString('utf8')) as unknown
        cleaned = Buffer.from(JSON.stringify(stripActionCredentials(parsed).answer))
      } catch (error) {
        throw new ProxyRefusal(502, `git proxy: ${gitlab} sent an unreadable Git LFS batch answer: ${error}`)
      }
      responseHeaders['content-length'] = String(cleaned.length)
      res.writeHead(statusCode, responseHeaders)
      res.end(cleaned)
      return credentials ? 'credentials' : ''
    }
    res.writeHead(statusCode, responseHeaders)
    await new Promise<void>((resolve) => {
      pipeline(body, res, () => resolve())
    })
    return credentials ? 'credentials' : ''
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL | ProxyRefusal): void {
    const started = performance.now()
    inFlight++
    let note = ''
    res.on('close', () => {
      inFlight--
      const ms = Math.round(performance.now() - started)
      const where = url instanceof URL ? `${url.origin}${url.pathname}` : (req.url ?? '').split('?')[0]
      log(`${req.method} ${where} ${res.statusCode} ${ms}ms${note ? ` ${note}` : ''}`)
      if (inFlight === 0) drained?.()
    })
    if (url instanceof ProxyRefusal) {
      answerText(res, url.status, url.message)
      return
    }
    forward(req, res, url).then(
      (result) => {
        note = result
      },
      (error: unknown) => {
        if (error instanceof ProxyRefusal) {
          answerText(res, error.status, error.message)
        } else {
          answerText(res, 502, `git proxy: failed to forward to ${gitlab}: ${error}`)
        }
      },
    )
  }

  const notForHere = new ProxyRefusal(
    403,
    `git proxy: only ${repository.origin} is reachable through this proxy`,
  )

  // Requests git sends in absolute form to the proxy (http:// repositories).
  const server = http.createServer({ requestTimeout: 0 }, (req, res) => {
    const raw = req.url ?? ''
    if (raw.startsWith('/')) {
      handle(
        req,
        res,
        new ProxyRefusal(400, `git proxy: use this as git's http.proxy for ${repository.origin}`),
      )
      return
    }
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      handle(req, res, new ProxyRefusal(400, 'git proxy: the request target is not a URL'))
      return
    }
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
    const allowed =
      url.protocol === 'http:' &&
      repository.protocol === 'http:' &&
      isRepositoryHost(repository, url.hostname, port) &&
      !url.username &&
      !url.password
    handle(req, res, allowed ? url : notForHere)
  })

  // Requests inside CONNECT tunnels, already decrypted; they all go to the repository's origin.
  const tunnelled = http.createServer({ requestTimeout: 0 }, (req, res) => {
    const raw = req.url ?? ''
    handle(req, res, raw.startsWith('/') ? new URL(`${repository.origin}${raw}`) : notForHere)
  })

  const sockets = new Set<Duplex>()
  const track = (socket: Duplex) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }
  server.on('connection', track)

  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = req.url ?? ''
    let allowed = false
    try {
      const { hostname, port } = new URL(`https://${target}`)
      allowed =
        repository.protocol === 'https:' && isRepositoryHost(repository, hostname, Number(port || 443))
    } catch {}
    socket.on('error', () => socket.destroy())
    if (!allowed || !secureContext) {
      const body = `${notForHere.message}\n`
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
      log(`CONNECT ${target} 403`)
      return
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) socket.unshift(head)
    const secure = new tls.TLSSocket(socket as Socket, {
      isServer: true,
      secureContext,
      ALPNProtocols: ['http/1.1'],
    })
    secure.on('error', () => secure.destroy())
    track(secure)
    tunnelled.emit('connection', secure)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  log(`git proxy for ${repository.origin}${repository.gitPath} listening on 127.0.0.1:${port}`)

  return {
    port,
    caCertificatePem: authority?.certificatePem,
    inFlight: () => inFlight,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve))
      for (const socket of sockets) socket.destroy()
      await closed
      await upstream.close()
    },
  }
}
