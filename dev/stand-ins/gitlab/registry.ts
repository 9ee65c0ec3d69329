/**
 * The container registry: GitLab's token endpoint (`/jwt/auth`, on the GitLab listener) and a
 * second listener speaking the Docker Registry HTTP API v2 for manifests.
 */
import { createHash, randomBytes } from 'node:crypto'
import type http from 'node:http'
import { gitUser } from './auth.js'
import { send } from './http.js'
import {
  canReadCode,
  type GitLabProject,
  type GitLabWorld,
  pathWithNamespace,
  type StandInContext,
} from './world.js'

export const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json'

interface ImageRef {
  repository: string
  tag: string
}

export function parseImage(image: string): ImageRef {
  const colon = image.lastIndexOf(':')
  return { repository: image.slice(0, colon).toLowerCase(), tag: image.slice(colon + 1) }
}

export function projectOfRepository(world: GitLabWorld, repository: string): GitLabProject | undefined {
  return Object.values(world.projects).find((p) => {
    const pwn = pathWithNamespace(p).toLowerCase()
    return repository === pwn || repository.startsWith(`${pwn}/`)
  })
}

/** The registry repositories of a project, with stable ids. */
export function registryRepositories(world: GitLabWorld, p: GitLabProject) {
  const pwn = pathWithNamespace(p).toLowerCase()
  const paths = [...new Set(world.images.map((i) => parseImage(i).repository))]
    .filter((r) => r === pwn || r.startsWith(`${pwn}/`))
    .sort()
  return paths.map((path, i) => ({
    id: p.id * 1000 + i + 1,
    path,
    name: path === pwn ? '' : path.slice(pwn.length + 1),
    tags: world.images
      .map(parseImage)
      .filter((r) => r.repository === path)
      .map((r) => r.tag)
      .sort(),
  }))
}

export function manifestFor(repository: string, tag: string): string {
  const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST_TYPE,
    config: {
      mediaType: 'application/vnd.docker.container.image.v1+json',
      size: 1469,
      digest: digest(`config ${repository}:${tag}`),
    },
    layers: [
      {
        mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
        size: 2811478,
        digest: digest(`layer ${repository}:${tag}`),
      },
    ],
  })
}

/** GitLab's registry token endpoint: grants `pull` on what the (possibly anonymous) user may read. */
export function registryAuth(
  ctx: StandInContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  params: URLSearchParams,
) {
  const check = gitUser(ctx.world, req)
  const user = check?.ok ? check.user : null
  if (check && !check.ok) {
    return send(res, 401, {
      errors: [
        {
          code: 'UNAUTHORIZED',
          message: 'HTTP Basic: Access denied. The provided password or token is incorrect.',
        },
      ],
    })
  }
  const granted = new Set<string>()
  for (const scope of params.getAll('scope')) {
    const m = /^repository:([^:]+):([a-z,*]+)$/.exec(scope)
    if (!m?.[1] || !m[2]?.split(',').includes('pull')) continue
    const project = projectOfRepository(ctx.world, m[1].toLowerCase())
    if (project && canReadCode(project, user)) granted.add(m[1].toLowerCase())
  }
  const token = randomBytes(24).toString('base64url')
  ctx.registryTokens.set(token, granted)
  send(res, 200, { token, expires_in: 300, issued_at: new Date().toISOString() })
}

/** The registry listener: Docker Registry HTTP API v2 manifests, behind GitLab's bearer tokens. */
export async function registryRoute(
  ctx: StandInContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  rawPath: string,
) {
  const baseHeaders = { 'docker-distribution-api-version': 'registry/2.0' }
  try {
    const auth = req.headers.authorization
    const bearer = auth && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '').trim() : undefined
    const grants = bearer ? ctx.registryTokens.get(bearer) : undefined
    const realm = `Bearer realm="${ctx.base}/jwt/auth",service="container_registry"`
    if (rawPath === '/v2/' || rawPath === '/v2') {
      if (!grants) {
        return send(
          res,
          401,
          { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] },
          { ...baseHeaders, 'www-authenticate': realm },
        )
      }
      return send(res, 200, {}, baseHeaders)
    }
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(rawPath)
    if (!m?.[1] || !m[2] || (req.method !== 'GET' && req.method !== 'HEAD')) {
      return send(
        res,
        404,
        { errors: [{ code: 'NOT_FOUND', message: 'not found', detail: null }] },
        baseHeaders,
      )
    }
    const name = decodeURIComponent(m[1])
    const tag = decodeURIComponent(m[2])
    const scope = `repository:${name}:pull`
    const unauthorizedBody = {
      errors: [
        {
          code: 'UNAUTHORIZED',
          message: 'authentication required',
          detail: [{ Type: 'repository', Name: name, Action: 'pull' }],
        },
      ],
    }
    if (!grants) {
      return send(res, 401, unauthorizedBody, {
        ...baseHeaders,
        'www-authenticate': `${realm},scope="${scope}"`,
      })
    }
    if (!grants.has(name)) {
      return send(res, 401, unauthorizedBody, {
        ...baseHeaders,
        'www-authenticate': `${realm},scope="${scope}",error="insufficient_scope"`,
      })
    }
    const images = ctx.world.images.map(parseImage).filter((i) => i.repository === name)
    if (images.length === 0) {
      return send(
        res,
        404,
        {
          errors: [
            { code: 'NAME_UNKNOWN', message: 'repository name not known to registry', detail: { name } },
          ],
        },
        baseHeaders,
      )
    }
    if (!images.some((i) => i.tag === tag)) {
      return send(
        res,
        404,
        { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: tag } }] },
        baseHeaders,
      )
    }
    const manifest = manifestFor(name, tag)
    const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`
    res.writeHead(200, {
      ...baseHeaders,
      'content-type': MANIFEST_TYPE,
      'content-length': String(Buffer.byteLength(manifest)),
      'docker-content-digest': digest,
      etag: `"${digest}"`,
    })
    res.end(req.method === 'HEAD' ? undefined : manifest)
  } catch {
    send(res, 500, { errors: [{ code: 'UNKNOWN', message: 'unknown error', detail: null }] }, baseHeaders)
  }
}
