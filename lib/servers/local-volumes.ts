import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UpstreamError } from '../core/errors.js'
import { fileSafe } from './local-logs.js'
import type { SessionVolume, VolumeStore } from './volumes.js'

/** What the local spawner writes beside a kept work directory (`hub/local_config.py`). */
interface VolumeFile {
  user: string
  server: string
  namespace: string
  project: string
  branch: string
  commit: string
  created: string
  stopped_at: string | null
}

function isVolumeFile(value: unknown): value is VolumeFile {
  const v = value as Partial<VolumeFile> | null
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.user === 'string' &&
    typeof v.server === 'string' &&
    typeof v.project === 'string' &&
    typeof v.namespace === 'string' &&
    typeof v.branch === 'string' &&
    typeof v.commit === 'string'
  )
}

const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT'

/**
 * The local stack's session volumes: the directories the local spawner keeps,
 * `<dir>/<user>/<server>/`, each with a `volume.json` describing it.
 */
export class LocalVolumeStore implements VolumeStore {
  readonly upstream = 'the local volumes'

  constructor(private readonly dir: string) {}

  private fail(err: unknown): never {
    throw new UpstreamError(this.upstream, 'unavailable', (err as Error).message)
  }

  private async read(userDir: string, serverDir: string): Promise<SessionVolume | undefined> {
    const id = join(this.dir, userDir, serverDir)
    let parsed: unknown
    try {
      parsed = JSON.parse(await readFile(join(id, 'volume.json'), 'utf8'))
    } catch (err) {
      // Gone meanwhile, or a start writing it: not a volume (yet).
      if (missing(err) || err instanceof SyntaxError) return undefined
      this.fail(err)
    }
    if (!isVolumeFile(parsed)) return undefined
    return {
      id,
      user: parsed.user,
      server: parsed.server,
      namespace: parsed.namespace,
      project: parsed.project,
      branch: parsed.branch,
      commitSha: parsed.commit,
      stoppedAt: typeof parsed.stopped_at === 'string' ? parsed.stopped_at : null,
      // The hub tells whether its server runs; a local process mounts nothing.
      inUse: false,
    }
  }

  private async entries(dir: string): Promise<string[]> {
    try {
      return await readdir(dir)
    } catch (err) {
      if (missing(err)) return []
      this.fail(err)
    }
  }

  async listForUser(user: string): Promise<SessionVolume[]> {
    const userDir = fileSafe(user)
    const found = await Promise.all(
      (await this.entries(join(this.dir, userDir))).map((server) => this.read(userDir, server)),
    )
    return found.filter((v): v is SessionVolume => v !== undefined && v.user === user)
  }

  async listAll(): Promise<SessionVolume[]> {
    const all: SessionVolume[] = []
    for (const userDir of await this.entries(this.dir)) {
      for (const server of await this.entries(join(this.dir, userDir))) {
        const volume = await this.read(userDir, server)
        if (volume) all.push(volume)
      }
    }
    return all
  }

  async delete(volume: SessionVolume): Promise<void> {
    try {
      await rm(volume.id, { recursive: true, force: true })
    } catch (err) {
      this.fail(err)
    }
  }

  async setStoppedAt(volume: SessionVolume, at: string | null): Promise<void> {
    const file = join(volume.id, 'volume.json')
    try {
      const current: unknown = JSON.parse(await readFile(file, 'utf8'))
      if (!isVolumeFile(current) || current.stopped_at === at) return
      // Written whole, then renamed: the spawner never reads half a file.
      const temporary = `${file}.${process.pid}.tmp`
      await writeFile(temporary, JSON.stringify({ ...current, stopped_at: at }, null, 2))
      await rename(temporary, file)
    } catch (err) {
      if (missing(err) || err instanceof SyntaxError) return
      this.fail(err)
    }
  }
}
