/** Finding the processes a harness started, by a variable it put in their environment. */
import { readdir, readFile } from 'node:fs/promises'

/** PIDs (other than this one) whose environment holds `name=value`. */
export async function processesWithEnv(name: string, value: string): Promise<number[]> {
  const wanted = Buffer.from(`${name}=${value}\0`)
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if ((await readFile(`/proc/${entry}/environ`)).includes(wanted)) pids.push(Number(entry))
    } catch {
      // gone, or not ours to read
    }
  }
  return pids
}
