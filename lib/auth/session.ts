/**
 * The login session cookie and the small checks around the login redirects.
 *
 * The cookie holds the hub OAuth access token, the user's name and an expiry, encrypted and
 * authenticated with AES-256-GCM. The key is derived with HKDF-SHA256 from the service's API
 * token, so every replica derives the same key without another secret, and changing the API
 * token ends every session. Encryption rather than a signature alone, because the payload
 * is a hub token: whoever sees the cookie (a log, a proxy) must not learn it. The cookie also
 * carries who the hub said the token belongs to at login, so the service verifies it alone, with
 * no hub call per request; a token the hub refuses later (seen in a header) stops it too.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

export const SESSION_COOKIE = 'notebooks-session'
export const STATE_COOKIE = 'notebooks-oauth-state'
/** A session lasts at most this long, or less when the hub's token expires sooner. */
export const SESSION_MAX_AGE_S = 12 * 60 * 60

export interface Session {
  /** The hub OAuth access token. */
  token: string
  user: string
  /** Epoch milliseconds. */
  expiresAt: number
  /** Who the hub said the token belongs to at login (absent in cookies sealed before it was kept). */
  identity?: { name: string; kind: string; admin: boolean }
}

const VERSION = 'v1'
const IV_BYTES = 12
const TAG_BYTES = 16

/** Seals sessions into cookie values and opens them again. */
export class SessionSealer {
  private readonly key: Buffer

  constructor(secret: string) {
    this.key = Buffer.from(hkdfSync('sha256', secret, 'renku-notebooks', 'session cookie v1', 32))
  }

  seal(session: Session): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    // The cookie's name is authenticated too, so a sealed value is only valid as this cookie.
    cipher.setAAD(Buffer.from(SESSION_COOKIE))
    const payload = JSON.stringify({
      t: session.token,
      u: session.user,
      e: session.expiresAt,
      ...(session.identity && { k: session.identity.kind, a: session.identity.admin }),
    })
    const sealed = Buffer.concat([iv, cipher.update(payload, 'utf8'), cipher.final(), cipher.getAuthTag()])
    return `${VERSION}.${sealed.toString('base64url')}`
  }

  /** The session, or null when the value is not one this service sealed, or has expired. */
  open(value: string | undefined, now = Date.now()): Session | null {
    if (!value?.startsWith(`${VERSION}.`) || value.length > 8192) return null
    const sealed = Buffer.from(value.slice(VERSION.length + 1), 'base64url')
    if (sealed.length < IV_BYTES + TAG_BYTES + 2) return null
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, IV_BYTES))
      decipher.setAAD(Buffer.from(SESSION_COOKIE))
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
      const text = Buffer.concat([
        decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8')
      const { t, u, e, k, a } = JSON.parse(text) as Record<string, unknown>
      if (typeof t !== 'string' || typeof u !== 'string' || typeof e !== 'number') return null
      if (e <= now) return null
      const session: Session = { token: t, user: u, expiresAt: e }
      if (typeof k === 'string' && typeof a === 'boolean') session.identity = { name: u, kind: k, admin: a }
      return session
    } catch {
      // Tampered, truncated or sealed with another key.
      return null
    }
  }
}

/**
 * `next` as a path on this service (under `prefix`), normalised, or null when it points
 * anywhere else: another host (`//evil`, `https://…`), backslashes (which browsers read as
 * slashes), control characters, or a path that leaves the prefix (`../`).
 */
export function safeNext(next: string, prefix: string): string | null {
  if (!next.startsWith('/') || next.startsWith('//') || next.length > 2048) return null
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return null
  let url: URL
  try {
    url = new URL(next, 'http://service.invalid')
  } catch {
    return null
  }
  if (url.origin !== 'http://service.invalid') return null
  const bare = prefix.replace(/\/$/, '')
  if (url.pathname !== bare && !url.pathname.startsWith(prefix)) return null
  return url.pathname + url.search
}

/**
 * Whether the caller's most preferred type in `Accept` is `text/html`: a browser navigating,
 * as opposed to a script. The first of equally preferred types wins.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false
  let best: { type: string; q: number } | undefined
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase())
    if (!type) continue
    let q = 1
    for (const param of params) {
      const [name, value] = param.split('=').map((s) => s.trim())
      if (name === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0
    }
    if (q > 0 && (!best || q > best.q)) best = { type, q }
  }
  return best?.type === 'text/html'
}
