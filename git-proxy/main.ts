/**
 * The git credential proxy as a process (the server pod's sidecar, or beside a notebook server
 * in the local stack): `node dist/git-proxy/main.js`, configured by the environment described in
 * git-proxy/README.md.
 */
import { type GitProxyOptions, startGitProxy } from './proxy.js'
import { parseRepositoryUrl } from './repository-scope.js'

function fail(message: string): never {
  process.stderr.write(`git proxy: ${message}\n`)
  process.exit(1)
}

function seconds(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0)
    fail(`${name} must be a number of seconds, got ${JSON.stringify(raw)}`)
  return value
}

export function optionsFromEnvironment(
  env: NodeJS.ProcessEnv,
): GitProxyOptions & { drainIdleSeconds: number } {
  const repositoryUrl = env.GIT_PROXY_REPOSITORY_URL
  if (!repositoryUrl) fail('GIT_PROXY_REPOSITORY_URL is required (the project http_url_to_repo)')
  let https: boolean
  try {
    https = parseRepositoryUrl(repositoryUrl).protocol === 'https:'
  } catch (error) {
    fail(`GIT_PROXY_REPOSITORY_URL: ${(error as Error).message}`)
  }
  const tokenFile = env.GIT_ACCESS_TOKEN_FILE
  if (!tokenFile) fail('GIT_ACCESS_TOKEN_FILE is required (the file holding the GitLab token)')
  const caFile = env.GIT_PROXY_CA_FILE || undefined
  if (https && !caFile) fail('GIT_PROXY_CA_FILE is required for an https:// repository (git trusts that CA)')
  const rawPort = env.GIT_PROXY_PORT || '8099'
  const port = Number(rawPort)
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    fail(`GIT_PROXY_PORT must be a port, got ${rawPort}`)
  const timeout = seconds('GIT_PROXY_TIMEOUT_SECONDS', 30)
  if (timeout === 0) fail('GIT_PROXY_TIMEOUT_SECONDS must be more than 0')
  return {
    repositoryUrl,
    tokenFile,
    port,
    caFile,
    headersTimeoutMs: timeout * 1000,
    drainIdleSeconds: seconds('GIT_PROXY_DRAIN_IDLE_SECONDS', 0),
  }
}

const { drainIdleSeconds, ...options } = optionsFromEnvironment(process.env)
const proxy = await startGitProxy(options).catch((error: Error) => fail(error.message))

// SIGTERM does not stop the service: in the pod, Kubernetes sends it while the autosave's
// preStop hook in another container may still be pushing through this proxy. With
// GIT_PROXY_DRAIN_IDLE_SECONDS > 0 the process exits once nothing has been in flight for that
// long; with 0 (the default) it serves until it is killed at the end of the grace period.
process.once('SIGTERM', () => {
  process.stdout.write(
    drainIdleSeconds > 0
      ? `git proxy: SIGTERM, exiting after ${drainIdleSeconds} s without requests\n`
      : 'git proxy: SIGTERM, still serving until killed (the autosave may push)\n',
  )
  if (drainIdleSeconds === 0) return
  let idleSince = Date.now()
  setInterval(() => {
    if (proxy.inFlight() > 0) idleSince = Date.now()
    else if (Date.now() - idleSince >= drainIdleSeconds * 1000) {
      void proxy.close().then(() => process.exit(0))
    }
  }, 200)
})
// An interactive stop (Ctrl-C in the local stack): finish what is in flight, then exit.
process.once('SIGINT', () => {
  void proxy.close().then(() => process.exit(0))
})
