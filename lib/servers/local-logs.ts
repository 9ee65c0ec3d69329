import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UpstreamError } from '../core/errors.js'
import type { LogRequest, LogSource } from './pods.js'

/** A file name part from a user-controlled name, as the local spawner writes it: never outside the directory. */
export function fileSafe(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '_')
  return cleaned === '' || cleaned === '.' || cleaned === '..' ? '_' : cleaned
}

/**
 * Server logs from files, as the local stack's spawner writes them:
 * `<dir>/<user>--<server>.log`.
 */
export class LocalLogSource implements LogSource {
  readonly upstream = 'the local log files'

  constructor(private readonly dir: string) {}

  async readLogs({ username, serverName, maxLines }: LogRequest): Promise<string[]> {
    const file = join(this.dir, `${fileSafe(username)}--${fileSafe(serverName)}.log`)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return ['The server has not written any logs yet.']
      throw new UpstreamError('the local log files', 'unavailable', (err as Error).message)
    }
    const lines = text.split('\n')
    if (lines.at(-1) === '') lines.pop()
    return maxLines > 0 ? lines.slice(-maxLines) : lines
  }
}
