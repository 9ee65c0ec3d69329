/** A git on PATH that records its arguments, so a test can check the token is never one of them. */
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'

export async function recordingGit(dir: string): Promise<{ bin: string; argvLog: string }> {
  const bin = path.join(dir, 'bin')
  const argvLog = path.join(dir, 'git-argv.log')
  await mkdir(bin, { recursive: true })
  await writeFile(
    path.join(bin, 'git'),
    `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec /usr/bin/git "$@"\n`,
  )
  await chmod(path.join(bin, 'git'), 0o755)
  return { bin, argvLog }
}
