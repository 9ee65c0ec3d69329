/**
 * A small HTTP client that keeps cookies like a browser (host-wide, by path) and never follows
 * redirects, so a test can walk the OAuth flow step by step and look at each answer.
 */

export interface SetCookie {
  name: string
  value: string
  attributes: Record<string, string | true>
}

export interface Step {
  status: number
  location: string | null
  setCookies: SetCookie[]
  headers: Headers
  text: string
  json<T = Record<string, unknown>>(): T
}

export function parseSetCookie(line: string): SetCookie {
  const [pair = '', ...rest] = line.split(';')
  const eq = pair.indexOf('=')
  const attributes: Record<string, string | true> = {}
  for (const part of rest) {
    const [key = '', ...value] = part.trim().split('=')
    attributes[key.toLowerCase()] = value.length ? value.join('=') : true
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attributes }
}

export class CookieJar {
  /** name → { value, path } */
  readonly cookies = new Map<string, { value: string; path: string }>()

  header(url: URL): string {
    return [...this.cookies]
      .filter(([, c]) => url.pathname.startsWith(c.path))
      .map(([name, c]) => `${name}=${c.value}`)
      .join('; ')
  }

  store(setCookies: SetCookie[]): void {
    for (const c of setCookies) {
      const expired = c.attributes['max-age'] === '0' || c.value === ''
      if (expired) this.cookies.delete(c.name)
      else this.cookies.set(c.name, { value: c.value, path: String(c.attributes.path ?? '/') })
    }
  }

  get(name: string): string | undefined {
    return this.cookies.get(name)?.value
  }

  /** One request; `url` may be relative to `base` (as a Location header is). */
  async go(
    url: string | URL,
    options: { base?: string; method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<Step> {
    const target = new URL(url, options.base)
    const cookie = this.header(target)
    const response = await fetch(target, {
      method: options.method ?? 'GET',
      headers: {
        accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
        ...(cookie && { cookie }),
        ...options.headers,
      },
      body: options.body,
      redirect: 'manual',
    })
    const setCookies = response.headers.getSetCookie().map(parseSetCookie)
    this.store(setCookies)
    const text = await response.text()
    const location = response.headers.get('location')
    return {
      status: response.status,
      location: location === null ? null : new URL(location, target).toString(),
      setCookies,
      headers: response.headers,
      text,
      json: <T>() => JSON.parse(text) as T,
    }
  }
}

/** Logs `user` in at the hub with its login form (password `password`). */
export async function hubLogin(jar: CookieJar, publicUrl: string, user: string): Promise<void> {
  const step = await jar.go('/hub/login', {
    base: publicUrl,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username: user, password: 'password' }).toString(),
  })
  if (step.status !== 302) throw new Error(`hub login of ${user} answered ${step.status}`)
}
