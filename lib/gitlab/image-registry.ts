import { UpstreamError } from '../core/errors.js'
import { HttpClient } from '../core/http.js'
import type { UpstreamObserver } from '../core/metrics.js'

export interface ImageReference {
  /** Registry host[:port] as written in the image name (docker.io when none is). */
  host: string
  repository: string
  /** A tag or a digest (`sha256:…`). */
  reference: string
}

const manifestTypes = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ')

/** Splits an image name the way Docker does; null when it is not one. */
export function parseImage(image: string): ImageReference | null {
  if (!/^[a-z0-9]([a-z0-9._:/@-]*[a-z0-9])?$/i.test(image) || image.length > 512) return null
  let rest = image
  let reference = 'latest'
  const at = rest.indexOf('@')
  if (at >= 0) {
    reference = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!/^sha256:[a-f0-9]{64}$/.test(reference)) return null
  } else {
    const colon = rest.lastIndexOf(':')
    if (colon > rest.lastIndexOf('/')) {
      reference = rest.slice(colon + 1)
      rest = rest.slice(0, colon)
      if (!/^[\w][\w.-]{0,127}$/.test(reference)) return null
    }
  }
  const parts = rest.split('/')
  const first = parts[0] ?? ''
  let host = 'docker.io'
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    host = first.toLowerCase()
    parts.shift()
  } else if (parts.length === 1) {
    parts.unshift('library')
  }
  const repository = parts.join('/')
  if (!/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/.test(repository)) return null
  return { host, repository, reference }
}

function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name)
}

function registryBase(host: string): string {
  if (host === 'docker.io') return 'https://registry-1.docker.io'
  // Docker itself talks plain HTTP to registries on loopback addresses.
  return `${isLoopback(host) ? 'http' : 'https'}://${host}`
}

function bearerChallenge(header: string | string[] | undefined): Record<string, string> | null {
  const value = Array.isArray(header) ? header[0] : header
  if (!value || !/^Bearer\s/i.test(value)) return null
  const params: Record<string, string> = {}
  for (const match of value.matchAll(/(\w+)="([^"]*)"/g)) {
    if (match[1] && match[2] !== undefined) params[match[1]] = match[2]
  }
  return params
}

export interface ImageCheckOptions {
  /** Sent to the token service (the user's GitLab token for the GitLab registry). */
  credentials?: { username: string; password: string }
  timeoutMs?: number
  observe?: UpstreamObserver
}

const manifestOperation = 'GET /v2/{repository}/manifests/{reference}'
// The realm is any URL the registry names; its path is not a bounded label value.
const tokenOperation = 'GET {token realm}'

/** Whether an image exists, asked of its registry with the Docker Registry HTTP API v2. */
export async function imageExists(
  image: ImageReference,
  { credentials, timeoutMs = 10_000, observe }: ImageCheckOptions = {},
): Promise<boolean> {
  const registry = new HttpClient({
    upstream: 'the image registry',
    baseUrl: registryBase(image.host),
    timeoutMs,
    observe,
  })
  const path = `/v2/${image.repository}/manifests/${image.reference}`
  const headers = { accept: manifestTypes }
  const first = await registry.request('GET', path, { operation: manifestOperation, headers })
  if (first.status === 200) return true
  if (first.status === 404) return false
  const challenge = first.status === 401 ? bearerChallenge(first.headers['www-authenticate']) : null
  if (!challenge?.realm) throw registry.unexpected('GET', path, first)

  let realm: URL
  try {
    realm = new URL(challenge.realm)
  } catch {
    throw new UpstreamError('the image registry', 'bad_response', 'invalid token realm')
  }
  const tokenService = new HttpClient({
    upstream: 'the image registry',
    baseUrl: realm.origin,
    timeoutMs,
    observe,
  })
  const auth = credentials
    ? {
        authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
      }
    : undefined
  const tokenResponse = await tokenService.request('GET', realm.pathname, {
    operation: tokenOperation,
    headers: auth,
    query: { service: challenge.service, scope: challenge.scope ?? `repository:${image.repository}:pull` },
  })
  // The token service refusing these credentials means the image cannot be read by this user.
  if (tokenResponse.status === 401 || tokenResponse.status === 403) return false
  const body = tokenResponse.json as { token?: unknown; access_token?: unknown } | undefined
  const token = body?.token ?? body?.access_token
  if (tokenResponse.status !== 200 || typeof token !== 'string') {
    throw tokenService.unexpected('GET', realm.pathname, tokenResponse)
  }
  const second = await registry.request('GET', path, {
    operation: manifestOperation,
    headers: { ...headers, authorization: `Bearer ${token}` },
  })
  if (second.status === 200) return true
  // 401 with "insufficient_scope": the token may not pull this repository.
  if (second.status === 404 || second.status === 401 || second.status === 403) return false
  throw registry.unexpected('GET', path, second)
}
