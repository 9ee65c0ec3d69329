/** Reading and changing the stand-in's bare repositories with the real `git`. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { notFound } from './http.js'
import { type GitLabProject, pathWithNamespace } from './world.js'

const execFileAsync = promisify(execFile)

/** Runs git in a bare repository; undefined when git fails. */
export async function git(repoDir: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync('git', args, {
      cwd: repoDir,
      env: { ...process.env, GIT_DIR: repoDir, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    })
    return stdout
  } catch {
    return undefined
  }
}

export async function resolveCommit(p: GitLabProject, ref: string): Promise<string | undefined> {
  if (ref === '' || ref.startsWith('-')) return undefined
  const out = await git(p.repoDir, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])
  return out?.trim() || undefined
}

export async function commitJson(base: string, p: GitLabProject, sha: string) {
  const sep = '%x1f'
  const fmt = ['%H', '%s', '%B', '%an', '%ae', '%aI', '%cn', '%ce', '%cI', '%P'].join(sep)
  const out = await git(p.repoDir, ['log', '-1', `--format=${fmt}`, sha])
  if (out === undefined) throw notFound('Commit')
  const [id = sha, title = '', message = '', an, ae, ad, cn, ce, cd, parents = ''] = out
    .replace(/\n$/, '')
    .split('\x1f')
  return {
    id,
    short_id: id.slice(0, 11),
    created_at: cd,
    parent_ids: parents.trim() === '' ? [] : parents.trim().split(' '),
    title,
    message,
    author_name: an,
    author_email: ae,
    authored_date: ad,
    committer_name: cn,
    committer_email: ce,
    committed_date: cd,
    trailers: {},
    extended_trailers: {},
    web_url: `${base}/${pathWithNamespace(p)}/-/commit/${id}`,
  }
}
