/** A GitLab stand-in over its own fixture world in a temporary directory, gone when the test ends. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createWorld, type World } from '../../dev/gitlab-world.js'
import { type GitLabStandIn, startGitLab } from '../../dev/stand-ins/gitlab/index.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

export interface TestGitLab {
  /** The temporary directory; the world's repositories are in `<dir>/repos`. */
  dir: string
  world: World
  gitlab: GitLabStandIn
}

export async function startTestGitLab(t: Teardown, name: string): Promise<TestGitLab> {
  const dir = await mkdtemp(path.join(tmpdir(), `${name}-`))
  const world = await createWorld(path.join(dir, 'repos'))
  const gitlab = await startGitLab(world)
  t.teardown(async () => {
    await gitlab.close()
    await rm(dir, { recursive: true, force: true })
  })
  return { dir, world, gitlab }
}
