/**
 * Starts a real JupyterHub (Debian's 3.0, `hub/local_config.py`) for a test: fresh run
 * directory and database, random ports, an `admin` service for the harness. Several may run at
 * once; leftovers are killed by PID (pid file, or the JHUB_MARKER=<run dir> environment entry
 * every process of this hub carries), never by name.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort } from './ports.js'
import { processesWithEnv } from './processes.js'

const REPO_ROOT = path.resolve(import.meta.dirname, '..')
const CONFIG = path.join(REPO_ROOT, 'hub', 'local_config.py')
const JUPYTERHUB = '/usr/bin/jupyterhub'
const OUTPUT_LINES = 200

export interface HubOptions {
  /** Where the hub proxies `/services/notebooks/` to, e.g. `http://127.0.0.1:18500`. */
  serviceUrl: string
  /** API token of the `notebooks` service. */
  serviceToken: string
  /** Extra environment for the hub (e.g. `JHUB_SLOW_SPAWN_TIMEOUT`, `JHUB_NAMED_SERVER_LIMIT`). */
  env?: Record<string, string>
}

export interface HubUser {
  name: string
  /** A JupyterHub API token of this user. */
  token: string
}

export interface HubResponse {
  status: number
  /** Parsed JSON, the text when not JSON, or null when empty. */
  body: unknown
  headers: Headers
}

export interface Hub {
  /** The proxy, e.g. `http://127.0.0.1:40001` (no trailing slash). */
  publicUrl: string
  /** `http://127.0.0.1:<hub port>/hub/api` */
  apiUrl: string
  runDir: string
  logsDir: string
  /** Token of the `admin` service. */
  adminToken: string
  oauthRedirectUri: string
  /** The hub's port numbers. */
  ports: { public: number; hub: number; proxyApi: number }
  /** Creates the user (if new), stores `auth_state.access_token` when given, returns a user API token. */
  createUser(name: string, gitlabToken?: string): Promise<HubUser>
  /** Replaces the user's auth_state: `{access_token}`, or none at all with `null`. */
  setGitLabToken(name: string, gitlabToken: string | null): Promise<void>
  /** Calls the hub API as the `admin` service; `apiPath` is relative to `apiUrl` (e.g. `/users/x`). */
  admin(method: string, apiPath: string, body?: unknown): Promise<HubResponse>
  /** The user_options the spawner recorded for the server, or null if it never started. */
  spawnedOptions(user: string, server: string): Promise<Record<string, unknown> | null>
  /** Path of the server's log file (clone and notebook server output). */
  serverLogPath(user: string, server: string): string
  /** The last lines the hub printed. */
  output(): string
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Same mapping as `_safe` in hub/local_config.py. */
const safe = (name: string) => {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '_')
  return cleaned === '' || cleaned === '.' || cleaned === '..' ? '_' : cleaned
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
    await res.arrayBuffer()
    return res.status === 200
  } catch {
    return false
  }
}

const markedProcesses = (marker: string) => processesWithEnv('JHUB_MARKER', marker)

async function killLeftovers(runDir: string): Promise<void> {
  const pids = new Set(await markedProcesses(runDir))
  try {
    const proxyPid = Number((await readFile(path.join(runDir, 'jupyterhub-proxy.pid'), 'utf8')).trim())
    // Only if it is still this hub's proxy (a recycled pid belongs to someone else).
    if (proxyPid > 0 && (await markedProcesses(runDir)).includes(proxyPid)) pids.add(proxyPid)
  } catch {
    // no pid file: the hub removed it on a clean stop
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

async function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true
  let timer: NodeJS.Timeout | undefined
  const exited = await Promise.race([
    new Promise<boolean>((resolve) => child.once('exit', () => resolve(true))),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms)
    }),
  ])
  // A pending timer would keep the test process alive long after the hub is gone.
  clearTimeout(timer)
  return exited
}

async function launch(opts: HubOptions): Promise<Hub> {
  const runDir = await mkdtemp(path.join(tmpdir(), 'renku-hub-'))
  const logsDir = path.join(runDir, 'logs')
  const ports = { public: await freePort(), hub: await freePort(), proxyApi: await freePort() }
  const adminToken = randomBytes(24).toString('hex')
  const publicUrl = `http://127.0.0.1:${ports.public}`
  const apiUrl = `http://127.0.0.1:${ports.hub}/hub/api`
  const oauthRedirectUri = `${publicUrl}/services/notebooks/oauth_callback`
  const debug = process.env.HUB_DEBUG === '1'

  const child = spawn(JUPYTERHUB, ['-f', CONFIG], {
    cwd: runDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      JHUB_RUN_DIR: runDir,
      JHUB_LOGS_DIR: logsDir,
      JHUB_PORT: String(ports.public),
      JHUB_HUB_PORT: String(ports.hub),
      JHUB_PROXY_API_PORT: String(ports.proxyApi),
      NOTEBOOKS_SERVICE_URL: opts.serviceUrl,
      NOTEBOOKS_API_TOKEN: opts.serviceToken,
      NOTEBOOKS_OAUTH_REDIRECT_URI: oauthRedirectUri,
      JHUB_ADMIN_TOKEN: adminToken,
      JUPYTERHUB_CRYPT_KEY: randomBytes(32).toString('hex'),
      JHUB_MARKER: runDir,
      ...opts.env,
    },
  })
  const lines: string[] = []
  const collect = (chunk: Buffer) => {
    if (debug) process.stderr.write(chunk)
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    if (lines.length > OUTPUT_LINES) lines.splice(0, lines.length - OUTPUT_LINES)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const output = () => lines.join('\n')

  // A test process that dies without stop() still takes its hub (and the hub its servers) along.
  const onExit = () => {
    if (child.exitCode === null) child.kill('SIGTERM')
  }
  process.once('exit', onExit)

  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    process.removeListener('exit', onExit)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      if (!(await waitForExit(child, 30_000))) {
        child.kill('SIGKILL')
        await waitForExit(child, 5_000)
      }
    }
    await killLeftovers(runDir)
    if (process.env.HUB_KEEP !== '1') await rm(runDir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 30_000
  let ready = false
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break
    if ((await answers(`${apiUrl}/`)) && (await answers(`${publicUrl}/hub/api/`))) {
      ready = true
      break
    }
    await sleep(100)
  }
  if (!ready) {
    const tail = lines.slice(-40).join('\n')
    await stop()
    throw new Error(
      `JupyterHub did not start (exit ${child.exitCode ?? child.signalCode ?? 'none'}):\n${tail}`,
    )
  }

  const admin = async (method: string, apiPath: string, body?: unknown): Promise<HubResponse> => {
    const res = await fetch(`${apiUrl}${apiPath}`, {
      method,
      headers: {
        authorization: `token ${adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    let parsed: unknown = text === '' ? null : text
    try {
      parsed = text === '' ? null : JSON.parse(text)
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed, headers: res.headers }
  }

  const expect = (what: string, res: HubResponse, ...ok: number[]) => {
    if (!ok.includes(res.status))
      throw new Error(`${what}: hub answered ${res.status} ${JSON.stringify(res.body)}`)
  }

  const setGitLabToken = async (name: string, gitlabToken: string | null) => {
    const res = await admin('PATCH', `/users/${encodeURIComponent(name)}`, {
      // The hub refuses a null auth_state; an empty one holds no GitLab token.
      auth_state: gitlabToken === null ? {} : { access_token: gitlabToken },
    })
    expect(`setting auth_state of ${name}`, res, 200)
  }

  return {
    publicUrl,
    apiUrl,
    runDir,
    logsDir,
    adminToken,
    oauthRedirectUri,
    ports,
    async createUser(name, gitlabToken) {
      expect(`creating user ${name}`, await admin('POST', `/users/${encodeURIComponent(name)}`), 201, 409)
      if (gitlabToken !== undefined) await setGitLabToken(name, gitlabToken)
      const res = await admin('POST', `/users/${encodeURIComponent(name)}/tokens`, { note: 'test harness' })
      expect(`creating a token for ${name}`, res, 200, 201)
      const token = (res.body as { token?: unknown }).token
      if (typeof token !== 'string') throw new Error(`no token for ${name} in the hub's answer`)
      return { name, token }
    },
    setGitLabToken,
    admin,
    async spawnedOptions(user, server) {
      try {
        const text = await readFile(
          path.join(runDir, 'spawned', `${safe(user)}--${safe(server)}.json`),
          'utf8',
        )
        return JSON.parse(text) as Record<string, unknown>
      } catch {
        return null
      }
    },
    serverLogPath: (user, server) => path.join(logsDir, `${safe(user)}--${safe(server)}.log`),
    output,
    stop,
  }
}

/**
 * Starts a hub and waits until its API answers, directly and through the proxy. Retries once
 * when a port was taken between choosing it and the hub binding it.
 */
export async function startHub(opts: HubOptions): Promise<Hub> {
  try {
    return await launch(opts)
  } catch (err) {
    if (!/address already in use|EADDRINUSE|Errno 98/i.test(String(err))) throw err
    return await launch(opts)
  }
}
