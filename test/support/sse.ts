/** A Server-Sent Events reader for tests: what a client of the progress stream receives. */

export interface SseEvent {
  id?: string
  event?: string
  // biome-ignore lint/suspicious/noExplicitAny: tests read the JSON data of many shapes
  data: any
}

export interface SseResult {
  status: number
  headers: Headers
  events: SseEvent[]
  /** Comment lines (without the leading colon). */
  comments: string[]
  /** The body when the answer was not a stream (an error). */
  // biome-ignore lint/suspicious/noExplicitAny: as above
  body?: any
  /** True when the server ended the stream; false when `until` stopped reading. */
  ended: boolean
}

export interface SseOptions {
  headers?: Record<string, string>
  /** Stop reading (and close the connection) once this returns true. */
  until?: (events: SseEvent[], comments: string[]) => boolean
  timeoutMs?: number
  /** Closes the connection when aborted; the events read so far are returned. */
  signal?: AbortSignal
}

/** Reads an event stream until it ends, `until` says so, or the time is up (which throws). */
export async function readEvents(url: string, options: SseOptions = {}): Promise<SseResult> {
  const controller = new AbortController()
  const leave = () => controller.abort()
  options.signal?.addEventListener('abort', leave, { once: true })
  const timer = setTimeout(
    () => controller.abort(new Error(`no end of ${url} in time`)),
    options.timeoutMs ?? 60_000,
  )
  try {
    const response = await fetch(url, {
      headers: { accept: 'text/event-stream', ...options.headers },
      signal: controller.signal,
    })
    const result: SseResult = {
      status: response.status,
      headers: response.headers,
      events: [],
      comments: [],
      ended: false,
    }
    if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      const text = await response.text()
      result.body = text ? JSON.parse(text) : null
      result.ended = true
      return result
    }
    const reader = response.body?.getReader()
    if (!reader) throw new Error('no body')
    const decoder = new TextDecoder()
    let buffered = ''
    let current: Partial<SseEvent> & { data?: string } = {}
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (err) {
        if (options.signal?.aborted) return result
        throw err
      }
      const { done, value } = chunk
      if (done) {
        result.ended = true
        return result
      }
      buffered += decoder.decode(value, { stream: true })
      let newline = buffered.indexOf('\n')
      while (newline >= 0) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        newline = buffered.indexOf('\n')
        if (line === '') {
          if (current.data !== undefined) {
            result.events.push({ ...current, data: JSON.parse(current.data) })
          }
          current = {}
        } else if (line.startsWith(':')) {
          result.comments.push(line.slice(1).trim())
        } else {
          const [field, ...rest] = line.split(':')
          const value = rest.join(':').replace(/^ /, '')
          if (field === 'data')
            current.data = current.data === undefined ? value : `${current.data}\n${value}`
          else if (field === 'id' || field === 'event') current[field] = value
        }
      }
      if (options.until?.(result.events, result.comments)) {
        await reader.cancel()
        return result
      }
    }
  } finally {
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', leave)
  }
}
