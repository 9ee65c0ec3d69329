import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { LFS_MISSING_MESSAGE, lfsPointer, readLfsObject } from '../../dev/stand-ins/gitlab/index.js'
import { basicAuth, gitEnvWithToken, isolatedGitEnv } from '../support/git-env.js'
import { startTestGitLab } from '../support/gitlab.js'

const execFileAsync = promisify(execFile)

const { dir, world, gitlab } = await startTestGitLab(t, 'gitlab-lfs-test')

const { developer, guest, outsider } = world.users
const { demo, notebook } = world.projects
const demoUrl = `${gitlab.url}/demo-group/demo-project.git`
const LFS_TYPE = 'application/vnd.git-lfs+json'

const run = (cwd: string, env: NodeJS.ProcessEnv, ...args: string[]) =>
  execFileAsync('git', ['-C', cwd, ...args], { env, maxBuffer: 1 << 26 }).then(
    ({ stdout }) => ({ ok: true, out: stdout, err: '' }),
    (err: { stderr?: string }) => ({ ok: false, out: '', err: err.stderr ?? '' }),
  )
const must = async (cwd: string, env: NodeJS.ProcessEnv, ...args: string[]) => {
  const r = await run(cwd, env, ...args)
  if (!r.ok) throw new Error(`git ${args.join(' ')} failed: ${r.err}`)
  return r.out
}
const remoteBranch = async (branch: string) =>
  (
    await must(
      dir,
      isolatedGitEnv,
      '--git-dir',
      demo.repoDir,
      'rev-parse',
      '--verify',
      '--quiet',
      `refs/heads/${branch}`,
    ).catch(() => '')
  ).trim() || undefined

interface Answer {
  status: number
  // biome-ignore lint/suspicious/noExplicitAny: JSON of many shapes, checked by the assertions
  body: any
  headers: Headers
}

async function batch(project: string, body: unknown, authorization?: string): Promise<Answer> {
  const headers: Record<string, string> = { accept: LFS_TYPE, 'content-type': LFS_TYPE }
  if (authorization) headers.authorization = authorization
  const res = await fetch(`${gitlab.url}/${project}.git/info/lfs/objects/batch`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // plain text
  }
  return { status: res.status, body: parsed, headers: res.headers }
}
const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex')
const objectOf = (content: Buffer) => ({ oid: sha256(content), size: content.length })

/** A working copy with git-lfs set up and `*.bin` tracked. */
async function lfsWorkdir(): Promise<string> {
  const work = await mkdtemp(path.join(tmpdir(), 'gitlab-lfs-work-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  await must(work, isolatedGitEnv, 'init', '-q', '-b', 'main')
  await must(work, isolatedGitEnv, 'lfs', 'install', '--local')
  await must(work, isolatedGitEnv, 'lfs', 'track', '*.bin')
  return work
}

t.test(
  'git lfs push stores the object and the branch is accepted; a fresh clone gets the bytes',
  async (t) => {
    const work = await lfsWorkdir()
    const content = randomBytes(1024 * 1024)
    await writeFile(path.join(work, 'data.bin'), content)
    await must(work, isolatedGitEnv, 'add', '.gitattributes', 'data.bin')
    await must(work, isolatedGitEnv, 'commit', '-q', '-m', 'one megabyte')
    const committed = await must(work, isolatedGitEnv, 'show', 'HEAD:data.bin')
    t.equal(
      committed,
      lfsPointer(sha256(content), content.length),
      'the commit holds a pointer, not the bytes',
    )

    t.equal(await readLfsObject(demo, sha256(content)), undefined, 'not stored before the push')
    const pushed = await run(
      work,
      gitEnvWithToken(developer.token),
      'push',
      '-q',
      demoUrl,
      'HEAD:refs/heads/lfs-data',
    )
    t.ok(pushed.ok, `git push succeeds ${pushed.err}`)
    t.same(await readLfsObject(demo, sha256(content)), content, 'the object is stored with the project')
    t.equal(await readLfsObject(notebook, sha256(content)), undefined, 'and only with that project')
    t.equal(
      await remoteBranch('lfs-data'),
      (await must(work, isolatedGitEnv, 'rev-parse', 'HEAD')).trim(),
      'the branch is accepted',
    )
    const batchCalls = gitlab.requests.filter(
      (r) => r.path === '/demo-group/demo-project.git/info/lfs/objects/batch',
    )
    t.ok(batchCalls.length > 0, 'git-lfs went through the batch API')
    t.ok(
      gitlab.requests.some(
        (r) => r.path === '/demo-group/demo-project.git/info/lfs/locks/verify' && r.status === 200,
      ),
      'and verified locks before pushing',
    )

    const clone = await mkdtemp(path.join(tmpdir(), 'gitlab-lfs-clone-'))
    t.teardown(() => rm(clone, { recursive: true, force: true }))
    const cloneEnv = gitEnvWithToken(developer.token, { GIT_LFS_SKIP_SMUDGE: '1' })
    await must(dir, cloneEnv, 'clone', '-q', '-b', 'lfs-data', demoUrl, clone)
    t.equal(
      await readFile(path.join(clone, 'data.bin'), 'utf8'),
      committed,
      'skipping smudge checks the pointer out',
    )
    await must(clone, isolatedGitEnv, 'lfs', 'install', '--local')
    const foreign = await run(clone, gitEnvWithToken(outsider.token), 'lfs', 'pull')
    t.notOk(foreign.ok, 'someone without access to the project cannot download the object')
    t.equal(await readFile(path.join(clone, 'data.bin'), 'utf8'), committed, 'and keeps the pointer')
    const pulled = await run(clone, gitEnvWithToken(developer.token), 'lfs', 'pull')
    t.ok(pulled.ok, `git lfs pull succeeds ${pulled.err}`)
    t.same(await readFile(path.join(clone, 'data.bin')), content, 'the clone has identical bytes')
  },
)

t.test('a push whose pointers name objects the project lacks is refused', async (t) => {
  const work = await lfsWorkdir()
  const content = randomBytes(4096)
  await writeFile(path.join(work, 'skipped.bin'), content)
  await must(work, isolatedGitEnv, 'add', '.gitattributes', 'skipped.bin')
  await must(work, isolatedGitEnv, 'commit', '-q', '-m', 'object never uploaded')
  const skipped = await run(
    work,
    gitEnvWithToken(developer.token, { GIT_LFS_SKIP_PUSH: '1' }),
    'push',
    demoUrl,
    'HEAD:refs/heads/lfs-skipped',
  )
  t.notOk(skipped.ok, 'the push fails')
  t.match(skipped.err, `remote: ${LFS_MISSING_MESSAGE}`, 'with the message GitLab prints')
  t.match(skipped.err, /pre-receive hook declined/)
  t.equal(await remoteBranch('lfs-skipped'), undefined, 'the branch is not created')
  t.equal(await readLfsObject(demo, sha256(content)), undefined)

  // Pushing the same commit again, uploading the object this time, goes through.
  const again = await run(
    work,
    gitEnvWithToken(developer.token),
    'push',
    '-q',
    demoUrl,
    'HEAD:refs/heads/lfs-skipped',
  )
  t.ok(again.ok, `once uploaded, the push is accepted ${again.err}`)

  // A pointer committed without any .gitattributes (no git-lfs at all) is checked too.
  const plain = await mkdtemp(path.join(tmpdir(), 'gitlab-lfs-plain-'))
  t.teardown(() => rm(plain, { recursive: true, force: true }))
  await must(plain, isolatedGitEnv, 'init', '-q', '-b', 'main')
  await writeFile(path.join(plain, 'handmade.txt'), lfsPointer(sha256(Buffer.from('never uploaded')), 14))
  await must(plain, isolatedGitEnv, 'add', 'handmade.txt')
  await must(plain, isolatedGitEnv, 'commit', '-q', '-m', 'handcrafted pointer')
  const pushHandmade = () =>
    run(plain, gitEnvWithToken(developer.token), 'push', demoUrl, 'HEAD:refs/heads/lfs-handmade')
  const handmade = await pushHandmade()
  t.notOk(handmade.ok, 'a handcrafted pointer without filter=lfs is refused as well')
  t.match(handmade.err, LFS_MISSING_MESSAGE)
  t.equal(await remoteBranch('lfs-handmade'), undefined)

  await writeFile(path.join(plain, 'handmade.txt'), 'just text\n')
  await must(plain, isolatedGitEnv, 'commit', '-q', '-am', 'no pointer any more')
  const later = await pushHandmade()
  t.notOk(later.ok, 'a pointer further down the pushed history is refused too')
})

t.test('batch API: credentials, access and per-object answers', async (t) => {
  const present = Buffer.from('already stored')
  const absent = Buffer.from('not stored anywhere')
  const put = await fetch(`${demoUrl}/gitlab-lfs/objects/${sha256(present)}/${present.length}`, {
    method: 'PUT',
    headers: { authorization: basicAuth(developer.token), 'content-type': 'application/octet-stream' },
    body: present,
  })
  t.equal(put.status, 200, 'a developer uploads')

  const upload = { operation: 'upload', transfers: ['basic'], objects: [objectOf(present), objectOf(absent)] }
  const download = {
    operation: 'download',
    transfers: ['basic'],
    objects: [objectOf(present), objectOf(absent)],
  }

  const anonymous = await batch('demo-group/demo-project', download)
  t.equal(anonymous.status, 401, 'no credentials: 401')
  t.match(anonymous.headers.get('lfs-authenticate'), /^Basic realm=/, 'with LFS-Authenticate')
  t.match(anonymous.headers.get('content-type'), LFS_TYPE)
  t.equal(
    (await batch('demo-group/demo-project', download, basicAuth('glpat-bogus'))).status,
    401,
    'unknown token: 401',
  )
  const expiring = gitlab.issueToken('developer')
  t.equal((await batch('demo-group/demo-project', download, basicAuth(expiring.accessToken))).status, 200)
  gitlab.expireToken(expiring.accessToken)
  t.equal(
    (await batch('demo-group/demo-project', download, basicAuth(expiring.accessToken))).status,
    401,
    'expired: 401',
  )

  const up = await batch('demo-group/demo-project', upload, basicAuth(developer.token))
  t.equal(up.status, 200)
  t.match(up.headers.get('content-type'), LFS_TYPE)
  t.equal(up.body.transfer, 'basic')
  t.same(up.body.objects[0], objectOf(present), 'an object the project has gets no upload action')
  t.match(up.body.objects[1].actions.upload, {
    href: `${demoUrl}/gitlab-lfs/objects/${sha256(absent)}/${absent.length}`,
    header: { Authorization: basicAuth(developer.token) },
  })

  const down = await batch('demo-group/demo-project', download, `Bearer ${developer.token}`)
  t.equal(down.status, 200, 'a Bearer token works too')
  t.match(down.body.objects[0].actions.download, {
    href: `${demoUrl}/gitlab-lfs/objects/${sha256(present)}`,
    header: { Authorization: `Bearer ${developer.token}` },
  })
  t.match(down.body.objects[1], { oid: sha256(absent), error: { code: 404 } }, 'a missing object: 404 on it')
  t.notOk(down.body.objects[1].actions)
  const byName = `Basic ${Buffer.from(`developer:${developer.token}`).toString('base64')}`
  t.equal((await batch('demo-group/demo-project', download, byName)).status, 200, 'user name and token')

  const guestUpload = await batch('science/lab/public-notebook', upload, basicAuth(guest.token))
  t.equal(guestUpload.status, 403, 'upload without Developer access: 403 when the user may download')
  t.match(guestUpload.body, { message: /forbidden/i })
  t.equal((await batch('science/lab/public-notebook', download, basicAuth(guest.token))).status, 200)
  t.equal((await batch('science/lab/public-notebook', upload)).status, 401, 'anonymous upload: 401')
  t.equal(
    (await batch('demo-group/demo-project', upload, basicAuth(guest.token))).status,
    404,
    'a guest of a private project cannot read its code, so the project is hidden',
  )
  t.equal(
    (await batch('demo-group/demo-project', download, basicAuth(outsider.token))).status,
    404,
    'another project: 404',
  )
  t.equal(
    (await batch('demo-group/nothing-here', download, basicAuth(developer.token))).status,
    404,
    'unknown project',
  )
  t.equal(
    (await batch('demo-group/demo-project', { operation: 'delete', objects: [] }, basicAuth(developer.token)))
      .status,
    422,
    'a malformed batch: 422',
  )

  const verify = await fetch(`${demoUrl}/info/lfs/locks/verify`, {
    method: 'POST',
    headers: { authorization: basicAuth(developer.token), 'content-type': LFS_TYPE },
    body: JSON.stringify({ ref: { name: 'refs/heads/main' } }),
  })
  t.equal(verify.status, 200)
  t.same(await verify.json(), { ours: [], theirs: [] }, 'locks verify as GitLab answers it')
  const verifyOutsider = await fetch(`${demoUrl}/info/lfs/locks/verify`, {
    method: 'POST',
    headers: { authorization: basicAuth(outsider.token), 'content-type': LFS_TYPE },
    body: '{}',
  })
  t.equal(verifyOutsider.status, 404)
})

t.test('basic transfer: uploads are checked against the oid and size', async (t) => {
  const content = randomBytes(2048)
  const oid = sha256(content)
  const putAs = (token: string | undefined, url: string, body: Buffer) =>
    fetch(url, {
      method: 'PUT',
      headers: {
        'content-type': 'application/octet-stream',
        ...(token ? { authorization: basicAuth(token) } : {}),
      },
      body,
    })
  const href = `${demoUrl}/gitlab-lfs/objects/${oid}/${content.length}`

  const wrongSize = await putAs(
    developer.token,
    `${demoUrl}/gitlab-lfs/objects/${oid}/${content.length + 1}`,
    content,
  )
  t.equal(wrongSize.status, 422, 'a size other than the one announced: 422')
  const tampered = Buffer.from(content)
  tampered[0] = (tampered[0] ?? 0) ^ 0xff
  const wrongSha = await putAs(developer.token, href, tampered)
  t.equal(wrongSha.status, 422, 'bytes that do not hash to the oid: 422')
  t.equal(await readLfsObject(demo, oid), undefined, 'nothing stored after refused uploads')

  t.equal((await putAs(undefined, href, content)).status, 401, 'anonymous upload: 401')
  t.equal((await putAs(guest.token, href, content)).status, 404, 'guest of the private project: 404')
  t.equal((await putAs(developer.token, href, content)).status, 200)
  t.same(await readLfsObject(demo, oid), content)

  const get = await fetch(`${demoUrl}/gitlab-lfs/objects/${oid}`, {
    headers: { authorization: basicAuth(developer.token) },
  })
  t.equal(get.status, 200)
  t.same(Buffer.from(await get.arrayBuffer()), content, 'the download answers the stored bytes')
  const elsewhere = await fetch(`${gitlab.url}/science/lab/public-notebook.git/gitlab-lfs/objects/${oid}`)
  t.equal(elsewhere.status, 404, 'objects are per project')
})
