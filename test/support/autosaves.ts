/**
 * Autosave branches made directly in the stand-in's bare repositories, as a stopped server's
 * save would have pushed them: one commit on top of the saved HEAD, holding the work tree.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import type { GitLabProject } from '../../dev/stand-ins/gitlab/index.js'

const execFileAsync = promisify(execFile)

export interface AutosaveSeed {
  user: string
  /** The launch's branch and commit (full sha). */
  branch: string
  commitSha: string
  /** The saved HEAD (the launch's commit unless the user made commits); its first 7 characters end the name. */
  head?: string
  /** Files changed or added by the saved work, on top of `head`'s tree. */
  files: Record<string, string>
  /** The autosave commit's date, ISO 8601. */
  date: string
}

/** Creates the branch `renku/autosave/<user>/<branch>/<sha[:7]>/<head[:7]>`; returns its name. */
export async function seedAutosave(project: GitLabProject, seed: AutosaveSeed): Promise<string> {
  const head = seed.head ?? seed.commitSha
  const name = `renku/autosave/${seed.user}/${seed.branch}/${seed.commitSha.slice(0, 7)}/${head.slice(0, 7)}`
  const scratch = await mkdtemp(path.join(tmpdir(), 'autosave-seed-'))
  const env = {
    ...process.env,
    GIT_DIR: project.repoDir,
    GIT_INDEX_FILE: path.join(scratch, 'index'),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: seed.user,
    GIT_AUTHOR_EMAIL: `${seed.user}@example.com`,
    GIT_AUTHOR_DATE: seed.date,
    GIT_COMMITTER_NAME: seed.user,
    GIT_COMMITTER_EMAIL: `${seed.user}@example.com`,
    GIT_COMMITTER_DATE: seed.date,
  }
  const git = async (args: string[], input?: string) => {
    const child = execFileAsync('git', args, { env })
    if (input !== undefined) child.child.stdin?.end(input)
    return (await child).stdout.trim()
  }
  try {
    await git(['read-tree', head])
    for (const [file, content] of Object.entries(seed.files)) {
      const blob = await git(['hash-object', '-w', '--stdin'], content)
      await git(['update-index', '--add', '--cacheinfo', `100644,${blob},${file}`])
    }
    const tree = await git(['write-tree'])
    const commit = await git(['commit-tree', tree, '-p', head, '-m', 'Autosave'])
    await git(['update-ref', `refs/heads/${name}`, commit])
    return name
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/** The names of the project's branches under `renku/autosave/`. */
export async function autosaveBranches(project: GitLabProject): Promise<string[]> {
  const { stdout } = await execFileAsync(
    'git',
    ['for-each-ref', '--format=%(refname:strip=2)', 'refs/heads/renku/autosave/'],
    { env: { ...process.env, GIT_DIR: project.repoDir } },
  )
  return stdout.split('\n').filter(Boolean).sort()
}
