/**
 * Load runs with autocannon and their summary: rate, latency percentiles, failures, and a
 * plain-text table. Used by the benchmark scripts in this folder.
 */
import path from 'node:path'
import autocannon, { type Options } from 'autocannon'

/** One endpoint under load: where it is and how it is called. */
export interface Target {
  /** Short key used in the JSON report, e.g. `service`. */
  key: string
  /** What the table shows, e.g. `service GET servers`. */
  label: string
  url: string
  headers: Record<string, string>
  /**
   * Requests each connection makes in turn, looping (e.g. one per user, each with its own
   * token and path); `headers` and `url` apply where these leave something out.
   */
  requests?: { path?: string; headers?: Record<string, string> }[]
}

export interface LoadOptions {
  connections: number
  seconds: number
  /** Seconds before a request counts as timed out. */
  timeoutSeconds: number
  /** Requests per second over all connections (paced clients); as fast as possible when unset. */
  overallRate?: number
}

/** Figures of one target: of a single run, or of all its runs taken together. */
interface Figures {
  target: string
  requests: number
  /** Completed requests per second. */
  rate: number
  /** ms; over several runs, the mean of their medians. */
  p50: number
  /** ms; over several runs, the worst: a target must hold in every run. */
  p99: number
  max: number
  errors: number
  timeouts: number
  non2xx: number
}

/** What one run of one target measured. */
export interface Run extends Figures {
  round: number
  seconds: number
}

/** All measured runs of one target, taken together. */
export interface Summary extends Figures {
  label: string
  runs: number
}

const round1 = (value: number) => Math.round(value * 10) / 10

/** Loads one target for a fixed time. */
export async function load(target: Target, options: LoadOptions, round: number): Promise<Run> {
  const result = await autocannon({
    url: target.url,
    headers: target.headers,
    connections: options.connections,
    duration: options.seconds,
    timeout: options.timeoutSeconds,
    ...(target.requests && {
      requests: target.requests,
      // In worker mode autocannon takes setupClient as a file path; its types know only functions.
      setupClient: path.join(import.meta.dirname, 'spread-requests.cjs') as unknown as Options['setupClient'],
    }),
    // Paced: autocannon's correction for coordinated omission assumes one request every
    // ceil(1 / per-connection rate) = 1 ms, and so invents latencies for every answer slower than
    // 1 ms; the latencies are taken as measured instead.
    ...(options.overallRate && { overallRate: options.overallRate, ignoreCoordinatedOmission: true }),
    // The load generator gets its own thread, so it does not take the event loop from the
    // service under test, which runs in this process.
    workers: 1,
  })
  const requests = result['2xx'] + result.non2xx
  return {
    target: target.key,
    round,
    seconds: result.duration,
    requests,
    rate: round1(requests / result.duration),
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
  }
}

export function summarize(target: Target, runs: Run[]): Summary {
  const own = runs.filter((run) => run.target === target.key && run.round > 0)
  const sum = (pick: (run: Run) => number) => own.reduce((total, run) => total + pick(run), 0)
  const seconds = sum((run) => run.seconds)
  return {
    target: target.key,
    label: target.label,
    runs: own.length,
    requests: sum((run) => run.requests),
    rate: seconds > 0 ? round1(sum((run) => run.requests) / seconds) : 0,
    p50: own.length ? round1(sum((run) => run.p50) / own.length) : 0,
    p99: Math.max(0, ...own.map((run) => run.p99)),
    max: Math.max(0, ...own.map((run) => run.max)),
    errors: sum((run) => run.errors),
    timeouts: sum((run) => run.timeouts),
    non2xx: sum((run) => run.non2xx),
  }
}

/** A fixed-width text table; the first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))]
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)))
  const line = (row: string[]) =>
    row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}
