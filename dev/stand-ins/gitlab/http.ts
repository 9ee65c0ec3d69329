/** HTTP plumbing shared by the stand-in's protocols: errors as GitLab words them, and replies. */
import type http from 'node:http'

/** What a REST route answers; `body` undefined means no body (204). */
export type Reply = { status: number; body?: unknown; headers?: Record<string, string> }

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(`HTTP ${status}`)
  }
}

export const notFound = (what: string) => new HttpError(404, { message: `404 ${what} Not Found` })
export const routeMiss = () => new HttpError(404, { message: '404 Not Found' })
export const forbidden = () => new HttpError(403, { message: '403 Forbidden' })
export const unauthorized = () => new HttpError(401, { message: '401 Unauthorized' })
export const FIXED_DATE = '2026-01-01T10:00:00.000Z'

/** The decoded segments of a raw path, or undefined when one is badly percent-encoded. */
export function segmentsOf(rawPath: string): string[] | undefined {
  try {
    return rawPath
      .split('/')
      .slice(1)
      .map((s) => decodeURIComponent(s))
  } catch {
    return undefined
  }
}

/** Answers JSON (or text, for a string body); no body at all for `undefined`. */
export function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) {
  if (body === undefined) {
    // 204 No Content
    res.writeHead(status, headers)
    res.end()
    return
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
