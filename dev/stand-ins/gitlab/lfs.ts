/**
 * Git LFS as GitLab serves it: the batch API and locks verification under
 * `<project>.git/info/lfs/`, the basic transfer under `<project>.git/gitlab-lfs/objects/`, and
 * the pre-receive check that refuses pushes of pointers to objects the project lacks.
 *
 * Objects are stored per project inside its bare repository, as git-lfs lays them out
 * (`<repoDir>/lfs/objects/ab/cd/abcd…`), so a test can read them and the pre-receive hook can
 * check them without asking the stand-in.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import type http from 'node:http'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { basicCredentials, checkToken, tokenFromRequest } from './auth.js'
import {
  Access,
  accessLevel,
  canReadCode,
  findProject,
  type GitLabProject,
  type GitLabUser,
  pathWithNamespace,
  type StandInContext,
} from './world.js'

const LFS_TYPE = 'application/vnd.git-lfs+json; charset=utf-8'
const OID = /^[0-9a-f]{64}$/
/** What GitLab's pre-receive check prints (`Gitlab::Checks::LfsIntegrity`, via the push checks). */
export const LFS_MISSING_MESSAGE =
  'GitLab: LFS objects are missing. Ensure LFS is properly set up or try a manual "git lfs push --all".'

/** Where the stand-in keeps a project's LFS object. */
export function lfsObjectPath(project: GitLabProject, oid: string): string {
  return path.join(project.repoDir, 'lfs', 'objects', oid.slice(0, 2), oid.slice(2, 4), oid)
}

/** The bytes of a project's LFS object, or undefined when the project does not have it. */
export async function readLfsObject(project: GitLabProject, oid: string): Promise<Buffer | undefined> {
  if (!OID.test(oid)) return undefined
  return readFile(lfsObjectPath(project, oid)).catch(() => undefined)
}

/** Stores bytes as an LFS object of a project (as an upload would) and returns its pointer. */
export async function storeLfsObject(
  project: GitLabProject,
  content: Buffer,
): Promise<{ oid: string; size: number; pointer: string }> {
  const oid = createHash('sha256').update(content).digest('hex')
  const file = lfsObjectPath(project, oid)
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(file, content)
  return { oid, size: content.length, pointer: lfsPointer(oid, content.length) }
}

/** The pointer file git-lfs commits in place of the content. */
export function lfsPointer(oid: string, size: number): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${size}\n`
}

/**
 * The pre-receive hook. Like GitLab (Gitaly's ListLFSPointers over `<new revs> --not --all`),
 * it looks at every new blob small enough to be a pointer and parses it, whatever
 * `.gitattributes` says: a pointer committed without `filter=lfs` still names an object the
 * project must hold. Deleted refs are skipped.
 */
const PRE_RECEIVE = `
const { execFileSync } = require('node:child_process')
const { existsSync, readFileSync } = require('node:fs')
const path = require('node:path')
const gitDir = path.resolve(process.env.GIT_DIR ?? '.')
const revs = readFileSync(0, 'utf8').split('\\n').map((l) => l.split(' ')[1]).filter((r) => r && !/^0+$/.test(r))
if (revs.length === 0) process.exit(0)
const git = (args, input) => execFileSync('git', args, { input, maxBuffer: 1 << 30 })
const listed = git(['rev-list', '--objects', ...revs, '--not', '--all']).toString()
const ids = listed.split('\\n').filter(Boolean).map((l) => l.split(' ')[0]).join('\\n')
if (ids === '') process.exit(0)
const small = git(['cat-file', '--batch-check=%(objectname) %(objecttype) %(objectsize)'], ids + '\\n')
  .toString().split('\\n').map((l) => l.split(' '))
  .filter(([, type, size]) => type === 'blob' && Number(size) <= 200).map(([id]) => id)
if (small.length === 0) process.exit(0)
const batch = git(['cat-file', '--batch'], small.join('\\n') + '\\n')
const pointer = /^version https:\\/\\/git-lfs\\.github\\.com\\/spec\\/v1\\n(?:[a-z0-9.-]+ .*\\n)*?oid sha256:([0-9a-f]{64})\\n(?:[a-z0-9.-]+ .*\\n)*?size (\\d+)\\n/
const missing = []
let at = 0
while (at < batch.length) {
  const eol = batch.indexOf(10, at)
  const size = Number(batch.subarray(at, eol).toString().split(' ')[2])
  const content = batch.subarray(eol + 1, eol + 1 + size).toString('utf8')
  at = eol + 1 + size + 1
  const m = pointer.exec(content)
  if (!m) continue
  const file = path.join(gitDir, 'lfs', 'objects', m[1].slice(0, 2), m[1].slice(2, 4), m[1])
  if (!existsSync(file)) missing.push(m[1])
}
if (missing.length > 0) {
  process.stderr.write(${JSON.stringify(`${LFS_MISSING_MESSAGE}\n`)})
  process.exit(1)
}
`

/**
 * Writes the hooks directory git-http-backend's receive-pack runs (through `core.hooksPath`).
 * The hook is plain CommonJS run by this Node without the test runner's loaders.
 */
export async function writeHooks(dir: string): Promise<void> {
  const script = path.join(dir, 'lfs-integrity.cjs')
  await writeFile(script, PRE_RECEIVE)
  const hook = path.join(dir, 'pre-receive')
  await writeFile(hook, `#!/bin/sh\nunset NODE_OPTIONS\nexec '${process.execPath}' '${script}'\n`)
  await chmod(hook, 0o755)
}

type Operation = 'download' | 'upload'

function lfsSend(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': LFS_TYPE,
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  })
  res.end(text)
}

const notFoundBody = { message: 'Not found.' }

/** The credentials GitLab accepts for LFS: Basic (any user name, the token as password) or Bearer. */
function lfsToken(req: http.IncomingMessage): string | undefined {
  return basicCredentials(req)?.password ?? tokenFromRequest(req, new URLSearchParams())
}

/**
 * GitLab's `lfs_check_access!`: downloading needs read access to the code, uploading needs
 * Developer; without the access asked for, 403 when the user may at least download and 404
 * otherwise, so a private project's existence does not leak. No (or bad) credentials: 401.
 */
function checkAccess(
  ctx: StandInContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  project: GitLabProject,
  operation: Operation,
): { user: GitLabUser | null } | undefined {
  const denied = () =>
    lfsSend(
      res,
      401,
      { message: 'HTTP Basic: Access denied' },
      { 'lfs-authenticate': 'Basic realm="GitLab"', 'www-authenticate': 'Basic realm="GitLab"' },
    )
  const token = lfsToken(req)
  const check = token === undefined ? undefined : checkToken(ctx.world, token)
  if (check && !check.ok) return void denied()
  const user = check?.ok ? check.user : null
  const scopes = check?.ok ? check.scopes : []
  const download =
    canReadCode(project, user) &&
    (user === null || scopes.some((s) => ['api', 'read_repository', 'write_repository'].includes(s)))
  const upload =
    user !== null &&
    scopes.some((s) => s === 'api' || s === 'write_repository') &&
    accessLevel(project, user) >= Access.developer
  if (operation === 'download' ? download : upload) return { user }
  if (user === null) return void denied()
  if (download) {
    return void lfsSend(res, 403, { message: 'Access forbidden. Check your access level.' })
  }
  return void lfsSend(res, 404, notFoundBody)
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

interface BatchObject {
  oid: string
  size: number
}

function parseBatch(body: unknown): { operation: Operation; objects: BatchObject[] } | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const { operation, objects } = body as { operation?: unknown; objects?: unknown }
  if (operation !== 'download' && operation !== 'upload') return undefined
  if (!Array.isArray(objects) || objects.length === 0) return undefined
  const parsed: BatchObject[] = []
  for (const o of objects as unknown[]) {
    const { oid, size } = (o ?? {}) as { oid?: unknown; size?: unknown }
    if (typeof oid !== 'string' || !OID.test(oid)) return undefined
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined
    parsed.push({ oid, size })
  }
  return { operation, objects: parsed }
}

const exists = (file: string) =>
  stat(file).then(
    (s) => s.isFile(),
    () => false,
  )

/** Routes `<project>.git/info/lfs/…` and `<project>.git/gitlab-lfs/objects/…`. */
export async function lfsRoute(
  ctx: StandInContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  rawPath: string,
) {
  const match = /^\/(.+?)\.git(\/(?:info\/lfs|gitlab-lfs)\/.*)$/.exec(rawPath)
  let projectPath: string | undefined
  try {
    projectPath = match?.[1] ? decodeURIComponent(match[1]) : undefined
  } catch {
    projectPath = undefined
  }
  const project = projectPath ? findProject(ctx.world, projectPath) : undefined
  const rest = match?.[2] ?? ''
  if (!project) return lfsSend(res, 404, notFoundBody)
  const repoUrl = `${ctx.base}/${pathWithNamespace(project)}.git`

  if (rest === '/info/lfs/objects/batch' && req.method === 'POST') {
    const batch = parseBatch(await readJson(req))
    if (!batch) {
      return lfsSend(res, 422, {
        message: 'The batch request needs an operation (download or upload) and objects with oid and size.',
      })
    }
    if (!checkAccess(ctx, req, res, project, batch.operation)) return
    // GitLab hands the caller's own Authorization back for the transfer.
    const authorization = req.headers.authorization
    const header = authorization ? { Authorization: authorization } : {}
    const objects = await Promise.all(
      batch.objects.map(async ({ oid, size }) => {
        const present = await exists(lfsObjectPath(project, oid))
        if (batch.operation === 'upload') {
          if (present) return { oid, size }
          const upload = {
            href: `${repoUrl}/gitlab-lfs/objects/${oid}/${size}`,
            header: { ...header, 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' },
          }
          return { oid, size, actions: { upload } }
        }
        if (!present) {
          return {
            oid,
            size,
            error: {
              code: 404,
              message: "Object does not exist on the server or you don't have permissions to access it",
            },
          }
        }
        const download = { href: `${repoUrl}/gitlab-lfs/objects/${oid}`, header }
        return { oid, size, authenticated: true, actions: { download } }
      }),
    )
    return lfsSend(res, 200, { transfer: 'basic', objects })
  }

  if (rest === '/info/lfs/locks/verify' && req.method === 'POST') {
    await readJson(req)
    if (!checkAccess(ctx, req, res, project, 'upload')) return
    return lfsSend(res, 200, { ours: [], theirs: [] })
  }
  if (rest === '/info/lfs/locks' && req.method === 'GET') {
    if (!checkAccess(ctx, req, res, project, 'download')) return
    return lfsSend(res, 200, { locks: [] })
  }

  const download = /^\/gitlab-lfs\/objects\/([0-9a-f]{64})$/.exec(rest)
  if (download?.[1] && (req.method === 'GET' || req.method === 'HEAD')) {
    if (!checkAccess(ctx, req, res, project, 'download')) return
    const content = await readLfsObject(project, download[1])
    if (!content) return lfsSend(res, 404, notFoundBody)
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(content.length),
    })
    return res.end(req.method === 'HEAD' ? undefined : content)
  }

  const upload = /^\/gitlab-lfs\/objects\/([0-9a-f]{64})\/(\d+)$/.exec(rest)
  if (upload?.[1] && upload[2] && req.method === 'PUT') {
    if (!checkAccess(ctx, req, res, project, 'upload')) return
    const [, oid, size] = upload
    const file = lfsObjectPath(project, oid)
    await mkdir(path.dirname(file), { recursive: true })
    const partial = `${file}.${randomBytes(6).toString('hex')}.part`
    const hash = createHash('sha256')
    let received = 0
    try {
      await pipeline(
        req,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            hash.update(chunk)
            received += chunk.length
            yield chunk
          }
        },
        createWriteStream(partial),
      )
    } catch (err) {
      await rm(partial, { force: true })
      throw err
    }
    // GitLab stores the object only when its sha256 and size are the ones in the path.
    if (received !== Number(size) || hash.digest('hex') !== oid) {
      await rm(partial, { force: true })
      res.writeHead(422, { 'content-type': 'text/plain; charset=utf-8' })
      return res.end('Unprocessable entity')
    }
    await rename(partial, file)
    res.writeHead(200, { 'content-type': LFS_TYPE, 'content-length': '0' })
    return res.end()
  }

  return lfsSend(res, 404, notFoundBody)
}
