/**
 * The proxy over real sockets: a recording GitLab stand-in behind it, requests as git sends them
 * (absolute-form for http://, CONNECT for https://), and real `git ls-remote`/`git push`.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { ProxyAgent, request } from 'undici'
import { createCertificateAuthority } from '../../git-proxy/certificates.js'
import { type GitProxy, type GitProxyOptions, startGitProxy } from '../../git-proxy/proxy.js'
import { startUpstream, type Upstream } from './upstream.js'

const execFileAsync = promisify(execFile)
const dir = await mkdtemp(path.join(tmpdir(), 'git-proxy-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))

const basic = (token: string) => `Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}`

// Kubernetes updates a mounted Secret by swapping a symlink to a new directory.
const tokenFile = path.join(dir, 'token')
let tokenVersion = 0
async function setToken(token: string) {
  const versionDir = path.join(dir, `..data-${++tokenVersion}`)
  await mkdir(versionDir)
  await writeFile(path.join(versionDir, 'token'), `${token}\n`)
  await symlink(versionDir, path.join(dir, '..data-next'))
  await rename(path.join(dir, '..data-next'), path.join(dir, '..data'))
}
await setToken('token-one')
await symlink(path.join('..data', 'token'), tokenFile)

// A bare repository at ns/project.git with one commit on main.
const projectRoot = path.join(dir, 'repos')
const bare = path.join(projectRoot, 'ns', 'project.git')
// GIT_SSL_CAINFO in the environment would override http.<url>.sslCAInfo (as in a notebook).
const { GIT_SSL_CAINFO: _, ...environment } = process.env
const git = (cwd: string, ...args: string[]) =>
  execFileAsync('git', ['-C', cwd, ...args], {
    env: {
      ...environment,
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'Dee',
      GIT_AUTHOR_EMAIL: 'dee@example.com',
      GIT_COMMITTER_NAME: 'Dee',
      GIT_COMMITTER_EMAIL: 'dee@example.com',
    },
  })
await mkdir(bare, { recursive: true })
await git(bare, 'init', '--bare', '-b', 'main')
await git(bare, 'config', 'http.receivepack', 'true')
const work = path.join(dir, 'work')
await mkdir(work)
await git(work, 'init', '-b', 'main')
await writeFile(path.join(work, 'README.md'), 'hello\n')
await git(work, 'add', '.')
await git(work, 'commit', '-m', 'first')
await git(work, 'push', bare, 'main')
const { stdout: headSha } = await git(bare, 'rev-parse', 'main')

const logs: string[] = []
async function proxyFor(upstream: Upstream, extra: Partial<GitProxyOptions> = {}): Promise<GitProxy> {
  const proxy = await startGitProxy({
    repositoryUrl: `${upstream.url}/ns/project.git`,
    tokenFile,
    port: 0,
    headersTimeoutMs: 2000,
    log: (line) => logs.push(line),
    ...extra,
  })
  t.teardown(() => proxy.close())
  return proxy
}

/** An absolute-form request through the proxy, as git sends it for an http:// remote. */
function viaProxy(
  proxy: GitProxy,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: proxy.port, path: url, method: init.method ?? 'GET', headers: init.headers },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        )
      },
    )
    req.on('error', reject)
    req.end(init.body)
  })
}

const lfsOid = 'a'.repeat(64)
const http1 = await startUpstream({
  projectRoot,
  custom: (req, res) => {
    if (req.url?.endsWith('/info/lfs/objects/batch')) {
      const href = (where: string) => ({
        href: `${upstreamUrl}${where}`,
        header: { Authorization: 'Basic Z2l0bGFiLXNlY3JldA==', 'X-Other': 'kept' },
        expires_in: 3600,
      })
      res.writeHead(200, { 'content-type': 'application/vnd.git-lfs+json' })
      res.end(
        JSON.stringify({
          transfer: 'basic',
          objects: [
            {
              oid: lfsOid,
              size: 5,
              authenticated: true,
              actions: { upload: href(`/ns/project.git/gitlab-lfs/objects/${lfsOid}/5`) },
            },
            {
              oid: 'b'.repeat(64),
              size: 5,
              authenticated: true,
              actions: { upload: href('/ns/elsewhere/objects/b') },
            },
          ],
        }),
      )
      return true
    }
    if (
      req.url?.includes('/gitlab-lfs/') ||
      req.url?.includes('/elsewhere/') ||
      req.url?.includes('/other')
    ) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
      return true
    }
    return false
  },
})
const upstreamUrl = http1.url
t.teardown(() => http1.close())
const proxy = await proxyFor(http1)

t.test('only requests inside the repository get the token', async (t) => {
  const cases: [string, boolean][] = [
    ['/ns/project.git/info/refs?service=git-upload-pack', true],
    ['/ns/project.git/../other.git/info/refs', false],
    ['/ns/project.git/%2e%2e/other.git/info/refs', false],
    ['/ns/project-other.git/info/refs', false],
    ['/ns/project.git%2f..%2fother.git/info/refs', false],
    ['/api/v4/projects/1', false],
  ]
  for (const [target, credentials] of cases) {
    http1.seen.length = 0
    await viaProxy(proxy, `${http1.url}${target}`)
    t.equal(http1.seen.length, 1, `${target} reaches GitLab`)
    t.equal(
      http1.seen[0]?.authorization,
      credentials ? basic('token-one') : undefined,
      `${target} credentials`,
    )
  }
  // The client's own Authorization outside the repository passes unchanged; inside it is replaced.
  http1.seen.length = 0
  await viaProxy(proxy, `${http1.url}/ns/other.git/info/refs`, {
    headers: { authorization: 'Basic bWluZQ==' },
  })
  await viaProxy(proxy, `${http1.url}/ns/project.git/info/refs`, {
    headers: { authorization: 'Basic bWluZQ==' },
  })
  t.same(
    http1.seen.map((seen) => seen.authorization),
    ['Basic bWluZQ==', basic('token-one')],
  )
  t.notOk(
    logs.some((line) => line.includes('token-one') || line.includes(basic('token-one').slice(6))),
    'logs never hold the token',
  )
})

t.test('other hosts are refused, with no request made', async (t) => {
  http1.seen.length = 0
  const other = await viaProxy(proxy, 'http://example.com/ns/project.git/info/refs')
  t.equal(other.status, 403)
  t.match(other.body, /only http:\/\/127\.0\.0\.1:\d+ is reachable/)
  const otherPort = await viaProxy(proxy, `http://127.0.0.1:${http1.port + 1}/ns/project.git/info/refs`)
  t.equal(otherPort.status, 403)
  const direct = await viaProxy(proxy, '/ns/project.git/info/refs')
  t.equal(direct.status, 400)
  const connect = await new Promise<string>((resolve) => {
    const socket = net.connect(proxy.port, '127.0.0.1', () =>
      socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'),
    )
    let answer = ''
    socket.on('data', (chunk) => (answer += chunk))
    socket.on('close', () => resolve(answer))
  })
  t.match(connect, /^HTTP\/1\.1 403/)
  t.equal(http1.seen.length, 0, 'GitLab saw nothing')
})

t.test('a token changed in its file is used at the next request; none at all is a 503', async (t) => {
  http1.seen.length = 0
  await setToken('token-two')
  await viaProxy(proxy, `${http1.url}/ns/project.git/info/refs`)
  t.equal(http1.seen[0]?.authorization, basic('token-two'))
  await setToken('')
  const empty = await viaProxy(proxy, `${http1.url}/ns/project.git/info/refs`)
  t.equal(empty.status, 503)
  t.match(empty.body, /no GitLab token/)
  await setToken('token-one')
})

t.test('GitLab refusing the token reaches git as a 503, not a password prompt', async (t) => {
  const refusing = await startUpstream({
    projectRoot,
    custom: (_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="GitLab"' })
      res.end()
      return true
    },
  })
  t.teardown(() => refusing.close())
  const p = await proxyFor(refusing)
  const answer = await viaProxy(p, `${refusing.url}/ns/project.git/info/refs`)
  t.equal(answer.status, 503)
  t.notOk(answer.headers['www-authenticate'])
  t.match(answer.body, /refused this server's credentials/)
})

t.test('a hung GitLab answers 504 within the bound; an unreachable one 502', async (t) => {
  const hung = net.createServer(() => {})
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    hung.close()
  })
  const hungPort = (hung.address() as net.AddressInfo).port
  const p = await proxyFor(
    { url: `http://127.0.0.1:${hungPort}`, port: hungPort, seen: [], close: async () => {} },
    {
      headersTimeoutMs: 300,
    },
  )
  const started = Date.now()
  const answer = await viaProxy(p, `http://127.0.0.1:${hungPort}/ns/project.git/info/refs`)
  t.equal(answer.status, 504)
  t.match(answer.body, /GitLab \(http:\/\/127\.0\.0\.1:\d+\) did not answer within 0\.3 s/)
  t.ok(Date.now() - started < 2000, `answered in ${Date.now() - started} ms`)

  const closed = net.createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const closedPort = (closed.address() as net.AddressInfo).port
  await new Promise((resolve) => closed.close(resolve))
  const q = await proxyFor({
    url: `http://127.0.0.1:${closedPort}`,
    port: closedPort,
    seen: [],
    close: async () => {},
  })
  const unreachable = await viaProxy(q, `http://127.0.0.1:${closedPort}/ns/project.git/info/refs`)
  t.equal(unreachable.status, 502)
  t.match(unreachable.body, /GitLab \(http:\/\/127\.0\.0\.1:\d+\) is unreachable: .*ECONNREFUSED/)
})

t.test('Git LFS batch answers lose GitLab credentials; their hrefs work through the proxy', async (t) => {
  http1.seen.length = 0
  const batch = await viaProxy(proxy, `${http1.url}/ns/project.git/info/lfs/objects/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.git-lfs+json', 'accept-encoding': 'gzip' },
    body: JSON.stringify({ operation: 'upload', objects: [{ oid: lfsOid, size: 5 }] }),
  })
  t.equal(batch.status, 200)
  t.notMatch(batch.body, /Z2l0bGFiLXNlY3JldA|Authorization/i)
  const answer = JSON.parse(batch.body) as {
    objects: { actions: { upload: { href: string; header: Record<string, string> } } }[]
  }
  t.same(answer.objects[0]?.actions.upload.header, { 'X-Other': 'kept' })
  t.equal(Number(batch.headers['content-length']), Buffer.byteLength(batch.body))
  t.equal(http1.seen[0]?.authorization, basic('token-one'), 'the batch request itself has credentials')

  const [inside, outside] = answer.objects.map((object) => object.actions.upload.href)
  http1.seen.length = 0
  const put = await viaProxy(proxy, inside ?? '', { method: 'PUT', body: 'hello' })
  t.equal(put.status, 200)
  t.match(http1.seen[0], { method: 'PUT', authorization: basic('token-one'), bodyBytes: 5 })
  await viaProxy(proxy, outside ?? '', { method: 'PUT', body: 'hello' })
  t.equal(http1.seen[1]?.authorization, undefined, 'an href outside the repository gets none')
})

t.test('git ls-remote and git push through the proxy to an http:// GitLab', async (t) => {
  http1.seen.length = 0
  const remote = `${http1.url}/ns/project.git`
  const withProxy = ['-c', `http.${remote}.proxy=http://127.0.0.1:${proxy.port}`]
  const { stdout } = await git(work, ...withProxy, 'ls-remote', remote)
  t.match(stdout, `${headSha.trim()}\trefs/heads/main`)
  t.ok(http1.seen.length > 0 && http1.seen.every((seen) => seen.authorization === basic('token-one')))

  await writeFile(path.join(work, 'big.bin'), Buffer.alloc(2 * 1024 * 1024, 7))
  await git(work, 'add', '.')
  await git(work, 'commit', '-m', 'big')
  await git(work, ...withProxy, '-c', 'http.postBuffer=65536', 'push', remote, 'main:pushed')
  const { stdout: pushed } = await git(bare, 'rev-parse', 'pushed')
  const { stdout: local } = await git(work, 'rev-parse', 'main')
  t.equal(pushed, local)
  t.ok(
    http1.seen.some(
      (seen) => seen.path.endsWith('git-receive-pack') && seen.authorization === basic('token-one'),
    ),
  )

  // Without the proxy the same GitLab asks for credentials: the proxy is what made it work.
  await t.rejects(git(work, 'ls-remote', remote), 'no credentials without the proxy')
})

t.test('https:// GitLab: CONNECT, the proxy CA, verified TLS upstream, real git', async (t) => {
  const gitlabCa = createCertificateAuthority()
  const { certificatePem: cert, keyPem: key } = gitlabCa.leafFor('127.0.0.1')
  const secure = await startUpstream({ projectRoot, tls: { cert, key } })
  t.teardown(() => secure.close())
  const caFile = path.join(dir, 'proxy-ca.pem')
  const p = await proxyFor(secure, { caFile, upstreamCa: [gitlabCa.certificatePem] })
  const remote = `${secure.url}/ns/project.git`
  const { stdout } = await git(
    work,
    '-c',
    `http.${remote}.proxy=http://127.0.0.1:${p.port}`,
    '-c',
    `http.${remote}.sslCAInfo=${caFile}`,
    'ls-remote',
    remote,
  )
  t.match(stdout, `${headSha.trim()}\trefs/heads/main`)
  t.ok(secure.seen.length > 0)
  t.ok(
    secure.seen.every((seen) => seen.authorization === basic('token-one')),
    'GitLab got the token over TLS',
  )

  // Through CONNECT, a path outside the repository still gets nothing.
  secure.seen.length = 0
  const dispatcher = new ProxyAgent({
    uri: `http://127.0.0.1:${p.port}`,
    requestTls: { ca: p.caCertificatePem },
  })
  t.teardown(() => dispatcher.close())
  await request(`${secure.url}/ns/project.git/../other.git/info/refs`, { dispatcher }).then((r) =>
    r.body.text(),
  )
  await request(`${secure.url}/ns/project-other.git/info/refs`, { dispatcher }).then((r) => r.body.text())
  t.same(
    secure.seen.map((seen) => seen.authorization),
    [undefined, undefined],
  )

  // A proxy that does not trust GitLab's certificate refuses to talk to it.
  const untrusting = await proxyFor(secure, { caFile: path.join(dir, 'other-ca.pem') })
  const untrustingAgent = new ProxyAgent({
    uri: `http://127.0.0.1:${untrusting.port}`,
    requestTls: { ca: untrusting.caCertificatePem },
  })
  t.teardown(() => untrustingAgent.close())
  const refused = await request(`${secure.url}/ns/project.git/info/refs`, { dispatcher: untrustingAgent })
  t.equal(refused.statusCode, 502)
  t.match(await refused.body.text(), /unreachable: .*certificate/)
})
