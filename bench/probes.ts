/**
 * What happens inside this process while a target is under load: how long its event loop was
 * held up, and which upstream calls the service made and how long they took. Both only observe
 * (a loop-delay histogram, undici's diagnostics channels); nothing in the service changes.
 */
import diagnostics from 'node:diagnostics_channel'
import { monitorEventLoopDelay } from 'node:perf_hooks'

export interface LoopDelay {
  p50: number
  p99: number
  max: number
}

export interface UpstreamCalls {
  calls: number
  /** Calls per second over the observed time. */
  rate: number
  p50: number
  p99: number
  max: number
}

const ms = (ns: number) => Math.round(ns / 1e5) / 10

/** Starts watching the event loop; the returned function stops and reports, in ms. */
export function watchLoop(): () => LoopDelay {
  const histogram = monitorEventLoopDelay({ resolution: 5 })
  histogram.enable()
  return () => {
    histogram.disable()
    return { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max) }
  }
}

interface UndiciRequest {
  origin?: string | URL
  path?: string
  method?: string
}

/**
 * Starts timing the calls undici makes to `origin` whose path starts with `pathPrefix`, from the
 * request's creation to its last body byte; the returned function stops and reports, in ms.
 */
export function watchUpstream(origin: string, pathPrefix: string): () => UpstreamCalls {
  const started = new WeakMap<object, number>()
  const durations: number[] = []
  const since = performance.now()
  const matches = (request: UndiciRequest) =>
    String(request.origin ?? '').replace(/\/$/, '') === origin && (request.path ?? '').startsWith(pathPrefix)
  const onCreate = (message: unknown) => {
    const { request } = message as { request: UndiciRequest }
    if (matches(request)) started.set(request, performance.now())
  }
  const onDone = (message: unknown) => {
    const { request } = message as { request: UndiciRequest }
    const start = started.get(request)
    if (start === undefined) return
    started.delete(request)
    durations.push(performance.now() - start)
  }
  diagnostics.subscribe('undici:request:create', onCreate)
  diagnostics.subscribe('undici:request:trailers', onDone)
  diagnostics.subscribe('undici:request:error', onDone)
  return () => {
    diagnostics.unsubscribe('undici:request:create', onCreate)
    diagnostics.unsubscribe('undici:request:trailers', onDone)
    diagnostics.unsubscribe('undici:request:error', onDone)
    const seconds = (performance.now() - since) / 1000
    const sorted = [...durations].sort((a, b) => a - b)
    const at = (q: number) =>
      Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 10) / 10
    return {
      calls: sorted.length,
      rate: seconds > 0 ? Math.round((sorted.length / seconds) * 10) / 10 : 0,
      p50: at(0.5),
      p99: at(0.99),
      max: Math.round((sorted.at(-1) ?? 0) * 10) / 10,
    }
  }
}

/** Latency of `count` calls made one after another (no concurrency), in ms. */
export async function sequential(
  count: number,
  call: () => Promise<void>,
): Promise<{ count: number; p50: number; p99: number; mean: number }> {
  const durations: number[] = []
  for (let i = 0; i < count; i++) {
    const start = performance.now()
    await call()
    durations.push(performance.now() - start)
  }
  const sorted = durations.sort((a, b) => a - b)
  const at = (q: number) =>
    Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 10) / 10
  return {
    count,
    p50: at(0.5),
    p99: at(0.99),
    mean: Math.round((sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)) * 10) / 10,
  }
}
