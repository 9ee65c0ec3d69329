import { ApiError, UpstreamError } from '../core/errors.js'
import { HttpClient, type HttpResponse } from '../core/http.js'
import { errorOutcome, type UpstreamObserver, type UpstreamOutcome } from '../core/metrics.js'
import { HubNotStarting, hubProgressEvents } from './progress-stream.js'

/** A named server as the hub's REST API describes it. */
export interface HubServer {
  name: string
  ready: boolean
  pending: string | null
  stopped?: boolean
  url: string
  started: string | null
  last_activity: string | null
  user_options: Record<string, unknown> | null
  state: Record<string, unknown> | null
  /**
   * Not the hub's: for a stopped server, how its last start ended, once the copy of the hub's
   * state (lib/hub/state/) has asked (`JupyterHubClient.lastStart`).
   */
  last_start?: LastStart
}

/**
 * How a stopped server's last start ended, as the hub's progress stream tells it: `failed` while
 * the hub holds that failed spawn (with its "Spawn failed: …" message), else `started` (the
 * server did start and was stopped later: by its user, the idle culler, an admin).
 */
export type LastStart = { outcome: 'failed'; message: string } | { outcome: 'started' }

/** The hub's user model (with `auth_state` only for holders of `admin:auth_state`). */
export interface HubUser {
  name: string
  admin: boolean
  kind?: string
  groups?: string[]
  servers: Record<string, HubServer>
  auth_state?: { access_token?: unknown } | null
}

/** Who a token belongs to, as `GET /user` with that token answers. */
export interface HubIdentity {
  name: string
  kind: string
  admin: boolean
}

/** A second start of a server that is starting is answered 202, like the first ('accepted'). */
export type StartOutcome = 'created' | 'accepted' | 'already-running'
export type HubStopAnswer = 'stopped' | 'accepted' | 'missing'

/**
 * Told about the service's own starts and stops, so a copy of the hub's state can show them
 * in the very next read (README, "Behaviour worth knowing").
 */
export interface HubWriteObserver {
  /** Before a start is sent; the returned function is called once the start is settled. */
  starting(user: string, server: string, userOptions: Record<string, unknown>): () => void
  /** After a start or stop answered (or failed); awaited before the caller learns the outcome. */
  changed(user: string): Promise<void>
}

/** Users per page of the user list: the hub's maximum (`api_page_max_limit`). */
const USERS_PAGE_LIMIT = 200
const PAGINATION = 'application/jupyterhub-pagination+json'

export interface JupyterHubClientOptions {
  apiUrl: string
  apiToken: string
  timeoutMs?: number
  observe?: UpstreamObserver
}

const seg = encodeURIComponent

function message(response: HttpResponse): string {
  const body = response.json as { message?: unknown } | undefined
  return typeof body?.message === 'string' ? body.message : ''
}

/** The hub's REST API, called with the service's own token (except `whoami`). */
export class JupyterHubClient {
  private readonly options: JupyterHubClientOptions
  private readonly http: HttpClient
  private readonly auth: Record<string, string>
  private readonly slowCallTimeoutMs: number
  /**
   * In-flight user reads, shared by concurrent callers so a burst costs the hub one call: the
   * only place reads are shared (the copy of the hub's state reads through here).
   */
  private readonly userReads = new Map<string, Promise<HubUser | null>>()
  private readonly observers = new Set<HubWriteObserver>()

  constructor(options: JupyterHubClientOptions) {
    this.options = options
    this.http = new HttpClient({
      upstream: 'JupyterHub',
      baseUrl: options.apiUrl,
      timeoutMs: options.timeoutMs,
      observe: options.observe,
    })
    this.auth = { authorization: `token ${options.apiToken}` }
    // The hub holds start and stop requests open until done or for up to 10 s (slow_spawn_timeout).
    this.slowCallTimeoutMs = (options.timeoutMs ?? 10_000) + 30_000
  }

  /** The identity behind a user's token, or null when the hub does not accept it. */
  async whoami(token: string): Promise<HubIdentity | null> {
    const response = await this.http.request('GET', '/user', {
      operation: 'GET /user',
      headers: { authorization: `token ${token}` },
    })
    if (response.status === 401 || response.status === 403) return null
    if (response.status !== 200) throw this.http.unexpected('GET', '/user', response)
    const body = response.json as Partial<HubIdentity> | undefined
    if (typeof body?.name !== 'string') throw this.http.unexpected('GET', '/user', response)
    return { name: body.name, kind: body.kind ?? 'user', admin: body.admin === true }
  }

  /**
   * The user model, with stopped servers (a named server whose spawn failed stays
   * listed as stopped until removed). Null when the hub has no such user.
   */
  getUser(name: string): Promise<HubUser | null> {
    const inFlight = this.userReads.get(name)
    if (inFlight) return inFlight
    const read = this.readUser(name).finally(() => {
      if (this.userReads.get(name) === read) this.userReads.delete(name)
    })
    this.userReads.set(name, read)
    return read
  }

  /** Registers an observer of the service's starts and stops; returns its removal. */
  observe(observer: HubWriteObserver): () => void {
    this.observers.add(observer)
    return () => this.observers.delete(observer)
  }

  /**
   * One page of `GET /users?state=…&include_stopped_servers=1`: each user with all their servers,
   * stopped ones included, and the offset of the next page (null on the last). `active` lists
   * users with a running or pending server (not those whose servers all stopped); `inactive` the
   * others. The hub pages over its join of users and servers, so a user may come twice.
   */
  async listUsersPage(
    state: 'active' | 'inactive',
    offset: number,
    timeoutMs?: number,
  ): Promise<{ users: HubUser[]; next: number | null }> {
    const response = await this.http.request('GET', '/users', {
      operation: 'GET /users',
      headers: { ...this.auth, accept: PAGINATION },
      query: { state, include_stopped_servers: 1, offset, limit: USERS_PAGE_LIMIT },
      timeoutMs,
    })
    if (response.status !== 200) throw this.http.unexpected('GET', '/users', response)
    const page = response.json as
      | { items?: unknown; _pagination?: { next?: { offset?: unknown } | null } }
      | undefined
    if (!Array.isArray(page?.items)) throw this.http.unexpected('GET', '/users', response)
    const users: HubUser[] = []
    for (const item of page.items as Partial<HubUser>[]) {
      if (typeof item?.name !== 'string') throw this.http.unexpected('GET', '/users', response)
      // The list never holds auth_state; a copy must not either.
      const { auth_state: _, ...user } = item as HubUser
      user.servers ??= {}
      users.push(user)
    }
    const next = page._pagination?.next?.offset
    return { users, next: typeof next === 'number' && next > offset ? next : null }
  }

  /**
   * Every user with an active (running or pending) server, with all their servers, every page;
   * of a user listed twice, the later copy. `onPage` is told each time a page arrived.
   */
  async listActiveUsers(options: { timeoutMs?: number; onPage?: () => void } = {}): Promise<HubUser[]> {
    const users = new Map<string, HubUser>()
    let offset: number | null = 0
    while (offset !== null) {
      const page = await this.listUsersPage('active', offset, options.timeoutMs)
      for (const user of page.users) users.set(user.name, user)
      options.onPage?.()
      offset = page.next
    }
    return [...users.values()]
  }

  /** Tells the observers a start is about to be sent; returns what settles it. */
  private noteStarting(user: string, server: string, userOptions: Record<string, unknown>): () => void {
    const settles = [...this.observers].map((observer) => observer.starting(user, server, userOptions))
    return () => {
      for (const settle of settles) settle()
    }
  }

  private async noteChanged(user: string): Promise<void> {
    this.forget(user)
    await Promise.all([...this.observers].map((observer) => observer.changed(user)))
  }

  /** Makes later reads of this user start afresh instead of joining one sent before a change. */
  private forget(name: string): void {
    this.userReads.delete(name)
  }

  private async readUser(name: string): Promise<HubUser | null> {
    const path = `/users/${seg(name)}`
    const response = await this.http.request('GET', path, {
      operation: 'GET /users/{name}',
      headers: this.auth,
      query: { include_stopped_servers: 1 },
    })
    if (response.status === 404) return null
    if (response.status !== 200) throw this.http.unexpected('GET', path, response)
    const user = response.json as HubUser | undefined
    if (typeof user?.name !== 'string') throw this.http.unexpected('GET', path, response)
    user.servers ??= {}
    return user
  }

  /** Asks the hub to start a named server with these user options. */
  async startServer(
    user: string,
    server: string,
    userOptions: Record<string, unknown>,
  ): Promise<StartOutcome> {
    const path = `/users/${seg(user)}/servers/${seg(server)}`
    const settle = this.noteStarting(user, server, userOptions)
    let response: HttpResponse
    try {
      // Not retried: a 5xx here means the spawn itself failed.
      response = await this.http.request('POST', path, {
        operation: 'POST /users/{name}/servers/{server_name}',
        headers: this.auth,
        body: userOptions,
        retry: false,
        timeoutMs: this.slowCallTimeoutMs,
      })
    } finally {
      await this.noteChanged(user)
      settle()
    }
    const text = message(response)
    switch (response.status) {
      case 201:
        return 'created'
      case 202:
        return 'accepted'
      case 400:
        if (/is already running/.test(text)) return 'already-running'
        // The hub answers a start that comes while the server is stopping this way.
        if (/is pending stop/.test(text)) {
          throw new ApiError(
            409,
            'SERVER_BUSY',
            'The server is stopping; launch it again once it has stopped.',
          )
        }
        if (/maximum of \d+ named servers/.test(text)) {
          throw new ApiError(
            409,
            'SERVER_LIMIT_REACHED',
            'You already have the maximum number of servers; stop one before launching another.',
          )
        }
        break
      case 429: {
        const retryAfter = response.headers['retry-after']
        throw new ApiError(
          429,
          'TOO_MANY_SPAWNS',
          'JupyterHub is starting too many servers right now; try again shortly.',
          {
            headers: {
              'retry-after': String(Array.isArray(retryAfter) ? retryAfter[0] : (retryAfter ?? '10')),
            },
          },
        )
      }
      case 404:
        throw new ApiError(404, 'USER_NOT_FOUND', 'JupyterHub does not know your user.')
      default:
        // 503 and 504 are the hub (or its proxy) being unavailable, not a failed spawn.
        if (response.status >= 500 && response.status !== 503 && response.status !== 504) {
          throw new UpstreamError(
            'JupyterHub',
            'bad_response',
            `POST ${path} answered ${response.status}`,
            'JupyterHub reported that the server failed to start.',
          )
        }
    }
    throw this.http.unexpected('POST', path, response)
  }

  /** Stops a named server and removes it from the user's list. */
  async stopServer(user: string, server: string): Promise<HubStopAnswer> {
    const path = `/users/${seg(user)}/servers/${seg(server)}`
    let response: HttpResponse
    try {
      // `remove` is honoured only in the JSON body, not as a query parameter.
      response = await this.http.request('DELETE', path, {
        operation: 'DELETE /users/{name}/servers/{server_name}',
        headers: this.auth,
        body: { remove: true },
        timeoutMs: this.slowCallTimeoutMs,
      })
    } finally {
      await this.noteChanged(user)
    }
    if (response.status === 204) return 'stopped'
    if (response.status === 202) return 'accepted'
    if (response.status === 404) return 'missing'
    if (response.status === 400 && /is pending/.test(message(response))) {
      throw new ApiError(
        409,
        'SERVER_BUSY',
        'The server is still starting or stopping and cannot be stopped yet; retry in a few seconds.',
      )
    }
    throw this.http.unexpected('DELETE', path, response)
  }

  /**
   * The hub's own progress stream of a server's start (`GET …/progress`), event by event, until
   * the hub ends it or `signal` aborts; `HubNotStarting` when the hub has no start to report.
   */
  progressEvents(user: string, server: string, signal: AbortSignal, timeoutMs?: number) {
    return hubProgressEvents({
      apiUrl: this.options.apiUrl,
      token: this.options.apiToken,
      user,
      server,
      signal,
      timeoutMs: timeoutMs ?? this.options.timeoutMs ?? 10_000,
    })
  }

  /**
   * How the last start of a stopped server ended: the first event of the hub's progress stream.
   * The hub answers a failed spawn it still holds with its failed event, and a server that did
   * start and was stopped with 404 (or 400 "not starting"). Undefined when the server is
   * starting or running again (nothing to tell about a stop). Bounded by `timeoutMs`.
   */
  async lastStart(user: string, server: string, timeoutMs: number): Promise<LastStart | undefined> {
    const began = performance.now()
    const signal = AbortSignal.timeout(timeoutMs)
    let outcome: UpstreamOutcome = 'ok'
    try {
      const events = this.progressEvents(user, server, signal, timeoutMs)
      // The first event says it: a failed spawn's event comes alone, at once.
      for await (const event of events) {
        return event.failed ? { outcome: 'failed', message: event.message ?? '' } : undefined
      }
      if (!signal.aborted) return undefined
      throw new UpstreamError(
        'JupyterHub',
        'timeout',
        `GET /users/${seg(user)}/servers/${seg(server)}/progress: no event within ${timeoutMs} ms`,
      )
    } catch (err) {
      if (err instanceof HubNotStarting) {
        outcome = '4xx'
        return { outcome: 'started' }
      }
      outcome = errorOutcome(err)
      throw err
    } finally {
      this.options.observe?.({
        upstream: 'JupyterHub',
        operation: 'GET /users/{name}/servers/{server_name}/progress',
        outcome,
        seconds: (performance.now() - began) / 1000,
      })
    }
  }

  /** Throws an UpstreamError when the hub's API does not answer. */
  async ping(): Promise<void> {
    const response = await this.http.request('GET', '/', { operation: 'GET /', timeoutMs: 3000 })
    if (response.status !== 200) throw this.http.unexpected('GET', '/', response)
  }
}
