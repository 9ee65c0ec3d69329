/**
 * A Kubernetes API stand-in for tests and benchmarks: a real HTTP server speaking the parts of
 * core/v1 the service uses, so that `@kubernetes/client-node` talks to it through an ordinary
 * kubeconfig file.
 *
 * Shapes, parameters and error bodies follow the Kubernetes section of the project's API
 * notes: `PodList`, watch streams (one compact JSON event per line, synthetic ADDED events
 * unless a resourceVersion is given), pod logs with the kubelet's refusals (`is waiting to
 * start: …`, 200 and nothing for an unscheduled pod), events with field selectors, graceful
 * deletion, and `Status` bodies for 400/401/403/404/422. PersistentVolumeClaims: create (409
 * `AlreadyExists` on a taken name), get, list by label selector, JSON merge-patch (RFC 7386),
 * delete (404 `NotFound` on a missing name).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fixtureFor } from '../fixtures/kubernetes/index.js'

import type { Json, StandInClaim, StandInEvent, StandInMetadata, StandInPod } from './kubernetes-objects.js'

export type { StandInClaim, StandInEvent, StandInPod }

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
}

export interface KubernetesStandInOptions {
  /** Namespace the pods live in; default `renku`. */
  namespace?: string
  /** The bearer token the kubeconfig carries and the stand-in accepts; random by default. */
  token?: string
  pods?: StandInPod[]
  events?: StandInEvent[]
  /** Log text of the notebook container, by pod name. */
  logs?: Record<string, string>
}

export interface KubernetesStandIn {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** A kubeconfig file pointing at the stand-in with the accepted token. */
  kubeconfigPath: string
  namespace: string
  token: string
  /** Every request, in order (the watch requests included). */
  requests: RecordedRequest[]
  /** Grace periods asked for by DELETE requests, by pod name. */
  deletions: Array<{ name: string; gracePeriodSeconds?: number }>
  /** Replaces all pods (watchers see DELETED/ADDED/MODIFIED events). */
  setPods(pods: StandInPod[]): void
  upsertPod(pod: StandInPod): void
  /** Removes a pod at once (as when its grace period ends). */
  removePod(name: string): void
  pod(name: string): StandInPod | undefined
  setEvents(events: StandInEvent[]): void
  addEvents(events: StandInEvent[]): void
  setLog(podName: string, text: string, container?: string): void
  /** Creates a ready server pod per name for the user; returns the pod names. */
  seedServers(username: string, serverNames: string[]): string[]
  /** When set, every authenticated request gets 403 as from RBAC. */
  setForbidden(forbidden: boolean): void
  /** Answers every request this many milliseconds late. */
  setDelay(ms: number): void
  /** How many watch requests are open. */
  openWatches(): number
  /**
   * Compacts history as etcd does: open watches get an ERROR event with a 410 Status and end,
   * and watching from an older resourceVersion is refused with 410, so clients must list again.
   */
  expireWatches(): void
  /** Stores a claim as KubeSpawner's `storage_pvc_ensure` creates it. */
  addClaim(claim: StandInClaim): void
  claim(name: string): StandInClaim | undefined
  claims(): StandInClaim[]
  /** Writes a kubeconfig with another token (to test a rejected token). */
  writeKubeconfig(token: string, namespace?: string): Promise<string>
  close(): Promise<void>
}

function status(code: number, reason: string, message: string, details?: Json): Json {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  }
}

type Requirement = (labels: Record<string, string>) => boolean

/** Label selector syntax: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`. */
function parseLabelSelector(selector: string): Requirement[] | string {
  const parts = selector.match(/([^,(]+(\([^)]*\))?)/g) ?? []
  const requirements: Requirement[] = []
  for (const raw of parts) {
    const part = raw.trim()
    if (part === '') continue
    let m = /^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part)
    if (m) {
      const [, key = '', op, list = ''] = m
      const values = list.split(',').map((v) => v.trim())
      requirements.push((l) =>
        op === 'in' ? values.includes(l[key] ?? '\0') : !values.includes(l[key] ?? '\0'),
      )
      continue
    }
    m = /^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/.exec(part)
    if (m) {
      const [, key = '', op, value = ''] = m
      requirements.push((l) => (op === '!=' ? l[key] !== value : l[key] === value))
      continue
    }
    m = /^(!?)([\w./-]+)$/.exec(part)
    if (m) {
      const [, not, key = ''] = m
      requirements.push((l) => (not ? !(key in l) : key in l))
      continue
    }
    return `unable to parse requirement: ${part}`
  }
  return requirements
}

const podFields: Record<string, (p: StandInPod) => string> = {
  'metadata.name': (p) => p.metadata.name,
  'metadata.namespace': (p) => p.metadata.namespace ?? '',
  'spec.nodeName': (p) => p.spec?.nodeName ?? '',
  'status.phase': (p) => p.status?.phase ?? '',
}

function get(object: Json, dotted: string): string {
  let value: unknown = object
  for (const key of dotted.split('.')) value = (value as Json | undefined)?.[key]
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value)
}

const eventFields: Record<string, (e: StandInEvent) => string> = Object.fromEntries(
  [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'type',
    'metadata.name',
    'metadata.namespace',
  ]
    .map((field) => [field, (e: StandInEvent) => get(e as unknown as Json, field)] as const)
    .concat([['source', (e: StandInEvent) => get(e as unknown as Json, 'source.component')]]),
)

/** Field selector syntax: `f=v`, `f==v`, `f!=v`, comma-separated; only the resource's selectable fields. */
function parseFieldSelector<T>(
  selector: string,
  fields: Record<string, (o: T) => string>,
): Array<(o: T) => boolean> | string {
  const tests: Array<(o: T) => boolean> = []
  for (const raw of selector.split(',')) {
    const part = raw.trim()
    if (part === '') continue
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(part)
    if (!m) return `invalid selector: '${selector}'; can't understand '${part}'`
    const [, field = '', op, value = ''] = m
    const read = fields[field]
    if (!read) return `field label not supported: ${field}`
    tests.push((o) => (op === '!=' ? read(o) !== value : read(o) === value))
  }
  return tests
}

// strconv.ParseBool, which the API server uses for boolean query parameters.
const booleans = new Set(['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False'])
const truthy = new Set(['1', 't', 'T', 'TRUE', 'true', 'True'])

/** How the kubelet words the waiting reasons it rephrases. */
const pullFailures: Record<string, string> = {
  ErrImagePull: "image can't be pulled",
  ImagePullBackOff: 'trying and failing to pull image',
}

/** The RBAC verb of each method; a GET is `get` with a name and `list` without. */
const verbs: Record<string, string> = { DELETE: 'delete', PATCH: 'patch', POST: 'create' }

function kubeletRefusal(pod: StandInPod, container: string, previous: boolean): string | undefined {
  const name = pod.metadata.name
  const statuses = [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])]
  const s = statuses.find((c) => c.name === container)
  if (!s) return `container "${container}" in pod "${name}" is not available`
  const { waiting, running, terminated } = s.state ?? {}
  const last = s.lastState?.terminated
  if (previous) {
    return last?.containerID
      ? undefined
      : `previous terminated container "${container}" in pod "${name}" not found`
  }
  if (running) return undefined
  if (terminated) {
    return terminated.containerID || last?.containerID
      ? undefined
      : `container "${container}" in pod "${name}" is terminated`
  }
  if (last) return last.containerID ? undefined : `container "${container}" in pod "${name}" is terminated`
  if (waiting) {
    const why = (waiting.reason && pullFailures[waiting.reason]) ?? waiting.reason
    return `container "${container}" in pod "${name}" is waiting to start: ${why}`
  }
  return `container "${container}" in pod "${name}" is waiting to start - no logs yet`
}

function clone<T>(value: T): T {
  return structuredClone(value)
}

/** Starts the stand-in on 127.0.0.1 and an ephemeral port. */
export async function startKubernetes(options: KubernetesStandInOptions = {}): Promise<KubernetesStandIn> {
  const namespace = options.namespace ?? 'renku'
  const token = options.token ?? randomBytes(16).toString('hex')
  const pods = new Map<string, StandInPod>()
  const claims = new Map<string, StandInClaim>()
  let events: StandInEvent[] = clone(options.events ?? [])
  const logs = new Map<string, string>()
  const requests: RecordedRequest[] = []
  const deletions: KubernetesStandIn['deletions'] = []
  const watchers = new Set<{ res: http.ServerResponse; match: (p: StandInPod) => boolean }>()
  const history: Array<{ rv: number; type: string; pod: StandInPod }> = []
  let resourceVersion = 1000
  // Watches from a resourceVersion older than this are refused with 410 Gone.
  let compacted = 0
  const expired = (from: number) =>
    status(410, 'Expired', `too old resource version: ${from} (${resourceVersion})`)
  let forbidden = false
  let delay = 0

  const bump = () => String(++resourceVersion)

  function notify(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: StandInPod): void {
    history.push({ rv: Number(pod.metadata.resourceVersion), type, pod: clone(pod) })
    const line = `${JSON.stringify({ type, object: pod })}\n`
    for (const w of watchers) if (w.match(pod) && !w.res.writableEnded) w.res.write(line)
  }

  function store(pod: StandInPod): void {
    const copy = clone(pod)
    copy.metadata.namespace ??= namespace
    copy.metadata.uid ??= randomUUID()
    copy.metadata.creationTimestamp ??= new Date().toISOString()
    copy.metadata.resourceVersion = bump()
    const existed = pods.has(copy.metadata.name)
    pods.set(copy.metadata.name, copy)
    notify(existed ? 'MODIFIED' : 'ADDED', copy)
  }

  function remove(name: string): void {
    const pod = pods.get(name)
    if (!pod) return
    pods.delete(name)
    pod.metadata.resourceVersion = bump()
    notify('DELETED', pod)
  }

  for (const pod of options.pods ?? []) store(pod)
  for (const [name, text] of Object.entries(options.logs ?? {})) logs.set(`${name}/notebook`, text)

  function send(
    res: http.ServerResponse,
    code: number,
    body: Json | string,
    type = 'application/json',
  ): undefined {
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }

  const badRequest = (res: http.ServerResponse, message: string) =>
    send(res, 400, status(400, 'BadRequest', message))
  const invalid = (res: http.ServerResponse, message: string, details: Json) =>
    send(res, 422, status(422, 'Invalid', message, details))
  const podNotFound = (res: http.ServerResponse, name: string) =>
    send(res, 404, status(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' }))
  const methodNotAllowed = (res: http.ServerResponse) =>
    send(
      res,
      405,
      status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'),
    )

  /** Whether an object is in `ns` and matches the query's `labelSelector`; a bad selector: why. */
  function selectedIn<T extends { metadata: StandInMetadata }>(
    ns: string,
    query: URLSearchParams,
  ): ((object: T) => boolean) | string {
    const inNamespace = (o: T) => o.metadata.namespace === ns
    const labelSelector = query.get('labelSelector')
    if (!labelSelector) return inNamespace
    const parsed = parseLabelSelector(labelSelector)
    if (typeof parsed === 'string') return parsed
    return (o) => inNamespace(o) && parsed.every((r) => r(o.metadata.labels ?? {}))
  }

  function listPods(res: http.ServerResponse, ns: string, query: URLSearchParams): undefined {
    const selected = selectedIn<StandInPod>(ns, query)
    if (typeof selected === 'string') return badRequest(res, selected)
    let match = selected
    const fieldSelector = query.get('fieldSelector')
    if (fieldSelector) {
      const parsed = parseFieldSelector(fieldSelector, podFields)
      if (typeof parsed === 'string') return badRequest(res, parsed)
      const base = match
      match = (p) => base(p) && parsed.every((t) => t(p))
    }
    const watch = query.get('watch')
    if (watch !== null && !booleans.has(watch)) {
      return badRequest(res, `strconv.ParseBool: parsing "${watch}": invalid syntax`)
    }
    if (watch !== null && truthy.has(watch)) {
      const from = query.get('resourceVersion')
      if (from && from !== '0' && Number(from) < compacted) {
        return send(res, 410, expired(Number(from)))
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
      // The API server sends the headers at once, before any event.
      res.flushHeaders()
      if (!from || from === '0') {
        for (const pod of pods.values())
          if (match(pod)) res.write(`${JSON.stringify({ type: 'ADDED', object: pod })}\n`)
      } else {
        for (const h of history) {
          if (h.rv > Number(from) && match(h.pod))
            res.write(`${JSON.stringify({ type: h.type, object: h.pod })}\n`)
        }
      }
      const watcher = { res, match }
      watchers.add(watcher)
      const timeout = Number(query.get('timeoutSeconds') ?? 0)
      const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined
      res.on('close', () => {
        if (timer) clearTimeout(timer)
        watchers.delete(watcher)
      })
      return
    }
    const items = [...pods.values()].filter(match)
    const limit = Number(query.get('limit') ?? 0)
    const page = limit > 0 ? items.slice(0, limit) : items
    const more = limit > 0 && items.length > limit
    send(res, 200, {
      kind: 'PodList',
      apiVersion: 'v1',
      metadata: {
        resourceVersion: String(resourceVersion),
        ...(more ? { continue: 'stand-in-continue' } : {}),
      },
      items: page,
    })
  }

  function readLog(res: http.ServerResponse, ns: string, name: string, query: URLSearchParams): undefined {
    for (const flag of ['follow', 'previous', 'timestamps', 'insecureSkipTLSVerifyBackend']) {
      const value = query.get(flag)
      if (value !== null && !booleans.has(value)) {
        return badRequest(res, `strconv.ParseBool: parsing "${value}": invalid syntax`)
      }
    }
    const pod = pods.get(name)
    if (!pod || pod.metadata.namespace !== ns) {
      return podNotFound(res, name)
    }
    for (const param of ['tailLines', 'limitBytes', 'sinceSeconds']) {
      const value = query.get(param)
      if (value === null) continue
      if (!/^-?\d+$/.test(value)) {
        return badRequest(res, `${param}: invalid value "${value}"`)
      }
      if (Number(value) < (param === 'tailLines' ? 0 : 1)) {
        const bound = param === 'tailLines' ? 0 : 1
        return invalid(
          res,
          `PodLogOptions "${name}" is invalid: ${param}: Invalid value: ${value}: must be greater than or equal to ${bound}`,
          { name, kind: 'PodLogOptions' },
        )
      }
    }
    const containers = (pod.spec?.containers ?? []).map((c) => c.name)
    const inits = (pod.spec?.initContainers ?? []).map((c) => c.name)
    let container = query.get('container') ?? ''
    if (!container) {
      if (containers.length !== 1) {
        return badRequest(
          res,
          `a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}] or one of the init containers: [${inits.join(' ')}]`,
        )
      }
      container = containers[0] ?? ''
    }
    if (!containers.includes(container) && !inits.includes(container)) {
      return badRequest(res, `container ${container} is not valid for pod ${name}`)
    }
    // An unscheduled pod has no kubelet to ask: the API server answers 200 with nothing.
    if (!pod.spec?.nodeName) return send(res, 200, '', 'text/plain')
    const refusal = kubeletRefusal(pod, container, truthy.has(query.get('previous') ?? ''))
    if (refusal) return badRequest(res, refusal)
    let text = logs.get(`${name}/${container}`) ?? ''
    const tail = query.get('tailLines')
    if (tail !== null) {
      const lines = text.split('\n')
      const trailing = lines[lines.length - 1] === '' ? lines.pop() : undefined
      text =
        lines.slice(Math.max(0, lines.length - Number(tail))).join('\n') +
        (trailing === '' && Number(tail) > 0 ? '\n' : '')
    }
    const limitBytes = query.get('limitBytes')
    if (limitBytes !== null) text = Buffer.from(text).subarray(0, Number(limitBytes)).toString()
    send(res, 200, text, 'text/plain')
  }

  function listEvents(res: http.ServerResponse, ns: string, query: URLSearchParams): undefined {
    let tests: Array<(e: StandInEvent) => boolean> = []
    const fieldSelector = query.get('fieldSelector')
    if (fieldSelector) {
      const parsed = parseFieldSelector(fieldSelector, eventFields)
      if (typeof parsed === 'string') return badRequest(res, parsed)
      tests = parsed
    }
    const items = events.filter((e) => (e.metadata.namespace ?? namespace) === ns && tests.every((t) => t(e)))
    send(res, 200, {
      kind: 'EventList',
      apiVersion: 'v1',
      metadata: { resourceVersion: String(resourceVersion) },
      items,
    })
  }

  async function deletePod(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    ns: string,
    name: string,
    query: URLSearchParams,
  ): Promise<undefined> {
    let body = ''
    for await (const chunk of req) body += chunk
    let grace: number | undefined = query.has('gracePeriodSeconds')
      ? Number(query.get('gracePeriodSeconds'))
      : undefined
    if (body.trim()) {
      try {
        const options = JSON.parse(body) as { gracePeriodSeconds?: number }
        grace = options.gracePeriodSeconds ?? grace
      } catch {
        return badRequest(res, 'the body of the request was in an unknown format')
      }
    }
    const pod = pods.get(name)
    if (!pod || pod.metadata.namespace !== ns) {
      return podNotFound(res, name)
    }
    deletions.push({ name, gracePeriodSeconds: grace })
    const seconds = grace ?? 30
    // A pod no kubelet runs, or a zero grace period, goes at once; otherwise it terminates.
    if (!pod.spec?.nodeName || seconds === 0) {
      remove(name)
      return send(res, 200, pod as unknown as Json)
    }
    if (!pod.metadata.deletionTimestamp) {
      pod.metadata.deletionTimestamp = new Date(Date.now() + seconds * 1000)
        .toISOString()
        .replace(/\.\d+Z$/, 'Z')
      pod.metadata.deletionGracePeriodSeconds = seconds
      pod.metadata.resourceVersion = bump()
      notify('MODIFIED', pod)
    }
    send(res, 200, pod as unknown as Json)
  }

  const claimNotFound = (name: string) =>
    status(404, 'NotFound', `persistentvolumeclaims "${name}" not found`, {
      name,
      kind: 'persistentvolumeclaims',
    })

  function storeClaim(claim: StandInClaim, ns = namespace): StandInClaim {
    const copy = clone(claim)
    copy.apiVersion = 'v1'
    copy.kind = 'PersistentVolumeClaim'
    copy.metadata.namespace = ns
    copy.metadata.uid ??= randomUUID()
    copy.metadata.creationTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    copy.metadata.resourceVersion = bump()
    claims.set(`${ns}/${copy.metadata.name}`, copy)
    return copy
  }

  /** RFC 7386: objects merge, null removes, anything else replaces. */
  function mergePatch(target: unknown, patch: unknown): unknown {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch
    const result: Json =
      typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Json) } : {}
    for (const [key, value] of Object.entries(patch as Json)) {
      if (value === null) delete result[key]
      else result[key] = mergePatch(result[key], value)
    }
    return result
  }

  async function readBody(req: http.IncomingMessage): Promise<unknown> {
    let body = ''
    for await (const chunk of req) body += chunk
    return JSON.parse(body)
  }

  async function handleClaims(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    ns: string,
    name: string | undefined,
    query: URLSearchParams,
  ): Promise<undefined> {
    const key = `${ns}/${name}`
    if (!name && req.method === 'GET') {
      const match = selectedIn<StandInClaim>(ns, query)
      if (typeof match === 'string') return badRequest(res, match)
      return send(res, 200, {
        kind: 'PersistentVolumeClaimList',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(resourceVersion) },
        items: [...claims.values()].filter(match),
      })
    }
    if (!name && req.method === 'POST') {
      let claim: StandInClaim
      try {
        claim = (await readBody(req)) as StandInClaim
      } catch {
        return badRequest(res, 'the body of the request was in an unknown format')
      }
      const claimName = claim?.metadata?.name
      if (!claimName) {
        return invalid(
          res,
          'PersistentVolumeClaim "" is invalid: metadata.name: Required value: name or generateName is required',
          { kind: 'PersistentVolumeClaim' },
        )
      }
      if (claims.has(`${ns}/${claimName}`)) {
        return send(
          res,
          409,
          status(409, 'AlreadyExists', `persistentvolumeclaims "${claimName}" already exists`, {
            name: claimName,
            kind: 'persistentvolumeclaims',
          }),
        )
      }
      return send(res, 201, storeClaim(claim, ns) as Json)
    }
    const existing = claims.get(key)
    if (name && req.method === 'GET') {
      return existing ? send(res, 200, existing as Json) : send(res, 404, claimNotFound(name))
    }
    if (name && req.method === 'PATCH') {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim()
      if (type !== 'application/merge-patch+json' && type !== 'application/strategic-merge-patch+json') {
        return send(
          res,
          415,
          status(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
          ),
        )
      }
      let patch: unknown
      try {
        patch = await readBody(req)
      } catch {
        return badRequest(res, 'the body of the request was in an unknown format')
      }
      if (!existing) return send(res, 404, claimNotFound(name))
      const merged = mergePatch(existing, patch) as StandInClaim
      merged.metadata.name = name
      return send(res, 200, storeClaim(merged, ns) as Json)
    }
    if (name && req.method === 'DELETE') {
      if (!existing) return send(res, 404, claimNotFound(name))
      claims.delete(key)
      return send(res, 200, existing as Json)
    }
    return methodNotAllowed(res)
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stand-in')
    const query: Record<string, string> = {}
    for (const [k, v] of url.searchParams) query[k] = v
    requests.push({ method: req.method ?? 'GET', path: url.pathname, query })
    const handle = async () => {
      if (req.headers.authorization !== `Bearer ${token}`) {
        return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'))
      }
      const m =
        /^\/api\/v1\/namespaces\/([^/]+)\/(pods|events|persistentvolumeclaims)(?:\/([^/]+))?(?:\/(log))?$/.exec(
          url.pathname,
        )
      if (!m)
        return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource', {}))
      const [, ns = '', resource = '', name, sub] = m
      if (forbidden) {
        const verb = verbs[req.method ?? ''] ?? (name ? 'get' : 'list')
        const what = sub ? `${resource}/${sub}` : resource
        const subject = `${name ? `${resource} "${name}"` : resource} is forbidden: User "system:serviceaccount:${namespace}:notebooks"`
        return send(
          res,
          403,
          status(
            403,
            'Forbidden',
            `${subject} cannot ${verb} resource "${what}" in API group "" in the namespace "${ns}"`,
            {
              ...(name ? { name } : {}),
              kind: resource,
            },
          ),
        )
      }
      if (resource === 'events' && !name && req.method === 'GET') return listEvents(res, ns, url.searchParams)
      if (resource === 'persistentvolumeclaims' && !sub)
        return handleClaims(req, res, ns, name, url.searchParams)
      if (resource !== 'pods') return methodNotAllowed(res)
      if (!name && req.method === 'GET') return listPods(res, ns, url.searchParams)
      if (name && sub === 'log' && req.method === 'GET') return readLog(res, ns, name, url.searchParams)
      if (name && !sub && req.method === 'GET') {
        const pod = pods.get(name)
        return pod && pod.metadata.namespace === ns
          ? send(res, 200, pod as unknown as Json)
          : podNotFound(res, name)
      }
      if (name && !sub && req.method === 'DELETE') return deletePod(req, res, ns, name, url.searchParams)
      methodNotAllowed(res)
    }
    const run = () => {
      handle().catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, status(500, 'InternalError', String(error)))
      })
    }
    if (delay > 0) setTimeout(run, delay)
    else run()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const dir = await mkdtemp(path.join(tmpdir(), 'k8s-stand-in-'))

  async function writeKubeconfig(withToken: string, ns = namespace): Promise<string> {
    const file = path.join(dir, `kubeconfig-${randomBytes(4).toString('hex')}`)
    // JSON is YAML: client-node reads it as a kubeconfig.
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'stand-in', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'notebooks', user: { token: withToken } }],
      contexts: [{ name: 'stand-in', context: { cluster: 'stand-in', user: 'notebooks', namespace: ns } }],
      'current-context': 'stand-in',
    }
    await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 })
    return file
  }
  const kubeconfigPath = await writeKubeconfig(token)

  return {
    url,
    kubeconfigPath,
    namespace,
    token,
    requests,
    deletions,
    setPods(list) {
      for (const name of [...pods.keys()]) if (!list.some((p) => p.metadata.name === name)) remove(name)
      for (const pod of list) store(pod)
    },
    upsertPod: store,
    removePod: remove,
    pod: (name) => {
      const pod = pods.get(name)
      return pod ? clone(pod) : undefined
    },
    setEvents(list) {
      events = clone(list)
    },
    addEvents(list) {
      events.push(...clone(list))
    },
    setLog(podName, text, container = 'notebook') {
      logs.set(`${podName}/${container}`, text)
    },
    seedServers(username, serverNames) {
      return serverNames.map((serverName) => {
        const { pod, log } = fixtureFor('running-ready', username, serverName)
        store(pod)
        logs.set(`${pod.metadata.name}/notebook`, log)
        return pod.metadata.name
      })
    },
    setForbidden(value) {
      forbidden = value
    },
    setDelay(ms) {
      delay = ms
    },
    openWatches: () => watchers.size,
    expireWatches() {
      compacted = resourceVersion
      history.length = 0
      for (const w of watchers) {
        watchers.delete(w)
        w.res.end(`${JSON.stringify({ type: 'ERROR', object: expired(resourceVersion - 1) })}\n`)
      }
    },
    addClaim: (claim) => {
      storeClaim(claim, claim.metadata.namespace ?? namespace)
    },
    claim: (name) => {
      const claim = claims.get(`${namespace}/${name}`)
      return claim ? clone(claim) : undefined
    },
    claims: () => [...claims.values()].map(clone),
    writeKubeconfig,
    async close() {
      for (const w of watchers) w.res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await rm(dir, { recursive: true, force: true })
    },
  }
}
