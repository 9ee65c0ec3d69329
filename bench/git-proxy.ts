/**
 * The git proxy's cost: RSS of the proxy process idle and after a 10 MB upload through it, and
 * the time of a 10 MB upload through it against the same upload straight to the upstream
 * (loopback). Also checks that an upload slower than the headers timeout is not cut off.
 * Run: npm run build && npx tsx bench/git-proxy.ts (it measures dist/git-proxy/main.js, as the image
 * runs it).
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'

const SIZE = 10 * 1024 * 1024
const ROUNDS = 5
const dir = await mkdtemp(path.join(tmpdir(), 'git-proxy-bench-'))
await writeFile(path.join(dir, 'token'), 'bench-token\n')

// An upstream that counts what it receives and answers 200 when the body ends (no auth check).
const upstream = http.createServer((req, res) => {
  let bytes = 0
  req.on('data', (chunk: Buffer) => (bytes += chunk.length))
  req.on('end', () => res.end(String(bytes)))
})
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
const upstreamPort = (upstream.address() as AddressInfo).port

const proxyPort = 18000 + Math.floor(Math.random() * 1000)
const proxy = spawn(process.execPath, [path.resolve('dist/git-proxy/main.js')], {
  env: {
    ...process.env,
    GIT_PROXY_REPOSITORY_URL: `http://127.0.0.1:${upstreamPort}/ns/project.git`,
    GIT_ACCESS_TOKEN_FILE: path.join(dir, 'token'),
    GIT_PROXY_PORT: String(proxyPort),
    GIT_PROXY_TIMEOUT_SECONDS: '1',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
})
await new Promise<void>((resolve) =>
  proxy.stdout?.on('data', (chunk: Buffer) => chunk.includes('listening') && resolve()),
)
proxy.stdout?.resume()

const rssMiB = async () => {
  const status = await readFile(`/proc/${proxy.pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024
}

function upload(
  viaProxy: boolean,
  body: Readable | Buffer,
): Promise<{ ms: number; status: number; answer: string }> {
  const target = `http://127.0.0.1:${upstreamPort}/ns/project.git/gitlab-lfs/objects/x/${SIZE}`
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.request(
      viaProxy
        ? { host: '127.0.0.1', port: proxyPort, path: target, method: 'PUT' }
        : { host: '127.0.0.1', port: upstreamPort, path: new URL(target).pathname, method: 'PUT' },
      (res) => {
        let answer = ''
        res.on('data', (chunk) => (answer += chunk))
        res.on('end', () => resolve({ ms: performance.now() - started, status: res.statusCode ?? 0, answer }))
      },
    )
    req.on('error', reject)
    if (Buffer.isBuffer(body)) req.end(body)
    else body.pipe(req)
  })
}

await new Promise((resolve) => setTimeout(resolve, 500))
const idle = await rssMiB()
const payload = Buffer.alloc(SIZE, 1)
const times = { direct: [] as number[], proxy: [] as number[] }
for (let round = 0; round < ROUNDS; round++) {
  times.direct.push((await upload(false, payload)).ms)
  const through = await upload(true, payload)
  if (through.answer !== String(SIZE)) throw new Error(`proxy delivered ${through.answer} bytes`)
  times.proxy.push(through.ms)
}
const after = await rssMiB()
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
const mbps = (ms: number) => (SIZE / 1024 / 1024 / (ms / 1000)).toFixed(0)

// A 3 s upload with a 1 s headers timeout: the timeout must not cut the upload.
async function* slowly() {
  for (let i = 0; i < 6; i++) {
    yield Buffer.alloc(1024, 2)
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}
const slow = await upload(true, Readable.from(slowly()))

console.log(
  `proxy RSS idle: ${idle.toFixed(1)} MiB; after ${ROUNDS} x 10 MB uploads: ${after.toFixed(1)} MiB`,
)
console.log(
  `10 MB upload, median of ${ROUNDS}: direct ${median(times.direct).toFixed(0)} ms (${mbps(median(times.direct))} MiB/s), ` +
    `through the proxy ${median(times.proxy).toFixed(0)} ms (${mbps(median(times.proxy))} MiB/s)`,
)
console.log(`3 s upload with a 1 s headers timeout: status ${slow.status}, ${slow.answer} bytes arrived`)
proxy.kill('SIGKILL')
upstream.close()
await rm(dir, { recursive: true, force: true })
