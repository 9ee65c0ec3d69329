/**
 * The GitLab world tests run against: real bare repositories with real commits (fixed author
 * and dates, so the shas are the same on every run), users with tokens and memberships, and
 * the images the registry holds.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import {
  Access,
  type GitLabOAuthApplication,
  type GitLabProject,
  type GitLabUser,
  type GitLabWorld,
} from './stand-ins/gitlab/index.js'

const execFileAsync = promisify(execFile)

export type FixtureUserName = 'developer' | 'guest' | 'outsider' | 'maintainer'

export interface World extends GitLabWorld {
  /** Directory holding the bare repositories. */
  dir: string
  users: Record<FixtureUserName, GitLabUser>
  projects: {
    /** `demo-group/demo-project`: private, default branch `master`. */
    demo: GitLabProject
    /** `science/lab/public-notebook`: public, default branch `main`. */
    notebook: GitLabProject
  }
  commits: {
    demo: {
      /** First commit on master; the registry has `demo-group/demo-project:<first[:7]>`. */
      masterFirst: string
      /** Second (latest) commit on master; no image in the registry. */
      masterSecond: string
      /** The commit of branch `feature` (on top of masterFirst); no image. */
      feature: string
    }
    notebook: {
      /** The only commit on `main`; the registry has its image. */
      main: string
    }
  }
  /** A token GitLab has revoked (401 `invalid_token`), belonging to nobody. */
  revokedToken: string
  revokedTokens: string[]
  /** The OAuth application the hub logs users in with (it refreshes their tokens). */
  oauthApplication: GitLabOAuthApplication
  oauthApplications: GitLabOAuthApplication[]
}

const gitEnv = (date: string): NodeJS.ProcessEnv => ({
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'Renku Tester',
  GIT_AUTHOR_EMAIL: 'tester@example.com',
  GIT_AUTHOR_DATE: date,
  GIT_COMMITTER_NAME: 'Renku Tester',
  GIT_COMMITTER_EMAIL: 'tester@example.com',
  GIT_COMMITTER_DATE: date,
})

async function git(cwd: string, args: string[], date = '2026-01-01T10:00:00Z'): Promise<string> {
  const { stdout } = await execFileAsync('git', args, { cwd, env: gitEnv(date) })
  return stdout.trim()
}

const token = () => `glpat-${randomBytes(15).toString('base64url')}`

const notebookJson = (text: string) =>
  `${JSON.stringify(
    {
      cells: [{ cell_type: 'markdown', metadata: {}, source: [text] }],
      metadata: { kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' } },
      nbformat: 4,
      nbformat_minor: 5,
    },
    null,
    1,
  )}\n`

interface CommitSpec {
  message: string
  date: string
  files: Record<string, string>
}

/** Builds a bare repository at `repoDir` from branches of commits; returns the shas per branch. */
async function buildRepo(
  repoDir: string,
  defaultBranch: string,
  branches: { name: string; from?: { branch: string; index: number }; commits: CommitSpec[] }[],
): Promise<Record<string, string[]>> {
  await mkdir(repoDir, { recursive: true })
  await git(repoDir, ['init', '-q', '--bare', `--initial-branch=${defaultBranch}`])
  const work = await mkdtemp(path.join(tmpdir(), 'fixture-work-'))
  const shas: Record<string, string[]> = {}
  try {
    await git(work, ['init', '-q', `--initial-branch=${defaultBranch}`])
    for (const branch of branches) {
      if (branch.from) {
        const start = shas[branch.from.branch]?.[branch.from.index]
        if (!start) throw new Error(`unknown start for ${branch.name}`)
        await git(work, ['checkout', '-q', '-B', branch.name, start])
      }
      shas[branch.name] = []
      for (const commit of branch.commits) {
        for (const [file, content] of Object.entries(commit.files)) {
          await mkdir(path.dirname(path.join(work, file)), { recursive: true })
          await writeFile(path.join(work, file), content)
        }
        await git(work, ['add', '-A'])
        await git(work, ['commit', '-q', '-m', commit.message], commit.date)
        shas[branch.name]?.push(await git(work, ['rev-parse', 'HEAD']))
      }
      await git(work, ['push', '-q', repoDir, `HEAD:refs/heads/${branch.name}`])
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  return shas
}

/** Creates the repositories under `dir` and returns the world (fresh tokens each call). */
export async function createWorld(dir: string): Promise<World> {
  const users: Record<FixtureUserName, GitLabUser> = {
    developer: {
      id: 11,
      username: 'developer',
      name: 'Dee Veloper',
      email: 'developer@example.com',
      token: token(),
    },
    guest: { id: 12, username: 'guest', name: 'Guy Est', email: 'guest@example.com', token: token() },
    outsider: {
      id: 13,
      username: 'outsider',
      name: 'Otto Sider',
      email: 'outsider@example.com',
      token: token(),
    },
    maintainer: {
      id: 14,
      username: 'maintainer',
      name: 'Mae Ntainer',
      email: 'maintainer@example.com',
      token: token(),
    },
  }

  const demoDir = path.join(dir, 'demo-group', 'demo-project.git')
  const demoShas = await buildRepo(demoDir, 'master', [
    {
      name: 'master',
      commits: [
        {
          message: 'Initial project',
          date: '2026-01-01T10:00:00Z',
          files: {
            'README.md': '# Demo project\n',
            'requirements.txt': 'numpy\n',
            'notebooks/analysis.ipynb': notebookJson('# Analysis'),
          },
        },
        {
          message: 'Add results',
          date: '2026-01-02T10:00:00Z',
          files: { 'results.md': 'All good.\n' },
        },
      ],
    },
    {
      name: 'feature',
      from: { branch: 'master', index: 0 },
      commits: [
        {
          message: 'Try a feature',
          date: '2026-01-03T10:00:00Z',
          files: { 'feature.md': 'Experimental.\n' },
        },
      ],
    },
  ])

  const notebookDir = path.join(dir, 'science', 'lab', 'public-notebook.git')
  const notebookShas = await buildRepo(notebookDir, 'main', [
    {
      name: 'main',
      commits: [
        {
          message: 'Public notebook',
          date: '2026-01-04T10:00:00Z',
          files: { 'README.md': '# Public notebook\n', 'index.ipynb': notebookJson('# Hello') },
        },
      ],
    },
  ])

  const masterFirst = demoShas.master?.[0]
  const masterSecond = demoShas.master?.[1]
  const feature = demoShas.feature?.[0]
  const main = notebookShas.main?.[0]
  if (!masterFirst || !masterSecond || !feature || !main) throw new Error('fixture repositories incomplete')

  const demo: GitLabProject = {
    id: 101,
    name: 'Demo Project',
    path: 'demo-project',
    namespace: { id: 7, name: 'Demo Group', path: 'demo-group', fullPath: 'demo-group', kind: 'group' },
    visibility: 'private',
    defaultBranch: 'master',
    repoDir: demoDir,
    members: {
      developer: { project: Access.developer },
      guest: { project: Access.guest },
      maintainer: { group: Access.maintainer },
    },
  }
  const notebook: GitLabProject = {
    id: 202,
    name: 'Public Notebook',
    path: 'public-notebook',
    namespace: { id: 9, name: 'Lab', path: 'lab', fullPath: 'science/lab', kind: 'group' },
    visibility: 'public',
    defaultBranch: 'main',
    repoDir: notebookDir,
    members: { developer: { group: Access.developer } },
  }

  const revokedToken = token()
  const oauthApplication = {
    uid: randomBytes(16).toString('hex'),
    secret: `gloas-${randomBytes(16).toString('hex')}`,
  }
  return {
    dir,
    users,
    projects: { demo, notebook },
    commits: { demo: { masterFirst, masterSecond, feature }, notebook: { main } },
    images: [
      `demo-group/demo-project:${masterFirst.slice(0, 7)}`,
      `science/lab/public-notebook:${main.slice(0, 7)}`,
    ],
    revokedToken,
    revokedTokens: [revokedToken],
    oauthApplication,
    oauthApplications: [oauthApplication],
  }
}
