/**
 * This replica's own starts, from the moment one is sent until the hub answered it: until then
 * the server reads as starting, before any read of the hub could show it (the service's own
 * writes are in its next read; README "Performance").
 */
import type { HubServer } from '../client.js'

interface Held {
  server: HubServer
  /** Starts of this server under way (a second one joins the first). */
  count: number
}

export class OwnStarts {
  /** Starts sent and not yet answered, per user and server. */
  private readonly underWay = new Map<string, Map<string, Held>>()

  /** A start is about to be sent; the returned function is called once it is settled. */
  starting(user: string, server: string, userOptions: Record<string, unknown>): () => void {
    let servers = this.underWay.get(user)
    if (!servers) {
      servers = new Map()
      this.underWay.set(user, servers)
    }
    const held = servers.get(server) ?? { server: pendingServer(server, userOptions), count: 0 }
    held.count++
    servers.set(server, held)
    let settled = false
    return () => {
      if (settled) return
      settled = true
      if (--held.count > 0) return
      servers.delete(server)
      if (servers.size === 0 && this.underWay.get(user) === servers) this.underWay.delete(user)
    }
  }

  /** The servers held for the user with its starts under way shown as starting; null when none. */
  overlay(
    user: string,
    servers: Readonly<Record<string, HubServer>> | undefined,
  ): Record<string, HubServer> | null {
    const starting = this.underWay.get(user)
    if (!starting) return null
    const shown = { ...servers }
    for (const [name, { server }] of starting) shown[name] = server
    return shown
  }
}

function pendingServer(name: string, userOptions: Record<string, unknown>): HubServer {
  return {
    name,
    ready: false,
    pending: 'spawn',
    stopped: false,
    url: '',
    started: null,
    last_activity: null,
    user_options: userOptions,
    state: null,
  }
}
