/**
 * Pod status and logs of notebook servers from the Kubernetes core/v1 API.
 *
 * Call pattern:
 * - In the background (unless `cache: false`): one list and one long-lived watch of all pods
 *   that have the `renku.io/username` label (see PodReflector), re-opened every 5 minutes.
 * - `podsForUser`: the user's pods come from that copy; only while it is not current (start-up,
 *   a broken watch) one pod list (`labelSelector=renku.io/username=<escaped user>`). Then at
 *   most one event list, when some matched pods are not ready: by pod name when one is, else
 *   the namespace's Warning events about pods (`involvedObject.kind=Pod,type=Warning`), filtered
 *   here. Nothing at all for a user without servers.
 * - `readLogs`: the user's pods as above, then one log read.
 * - `deletePod`: one delete. `ping`: one pod list with `limit=1`.
 */
import http from 'node:http'
import https from 'node:https'
import {
  CoreV1Api,
  type CoreV1Event,
  createConfiguration,
  KubeConfig,
  type Middleware,
  ServerConfiguration,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node'
import { ConfigError } from '../core/config.js'
import type { UpstreamObserver } from '../core/metrics.js'
import type { PodChanges } from '../hub/state/types.js'
import type {
  LogRequest,
  LogSource,
  PodInspector,
  PodLaunch,
  PodLaunchSource,
  PodView,
  ServerRef,
} from '../servers/pods.js'
import { httpStatus, observeCall, statusBody, toUpstreamError } from './errors.js'
import {
  escapeUsername,
  HUB_USERNAME_ANNOTATION,
  isLabelValue,
  NOTEBOOK_CONTAINER,
  SERVERNAME_ANNOTATION,
  USERNAME_LABEL,
} from './labels.js'
import { DELETE_POD, LIST_EVENTS, LIST_PODS, READ_POD_LOG } from './operations.js'
import { podLaunch } from './pod-progress.js'
import { PodReflector } from './pod-reflector.js'
import { isPodReady, notebookContainer, toPodView } from './pod-view.js'

/** The logger subset used (pino's signature), so the class stays free of Fastify. */
export interface KubernetesLogger {
  warn(obj: object, msg: string): void
}

export interface KubernetesPodsOptions {
  /** A client configured for the cluster. */
  api: CoreV1Api
  /** Namespace of the server pods. */
  namespace: string
  log?: KubernetesLogger
  /** A running copy of the notebook pods; without it every read lists pods. */
  reflector?: PodReflector
  /** Called by `close()`: frees the connections of the client. */
  onClose?: () => void
  /** Told of each API call with its operation, outcome and duration. */
  observe?: UpstreamObserver
}

export interface KubernetesClientOptions {
  /** Path of a kubeconfig file; wins over `inCluster`, as for kubectl. */
  kubeconfig?: string
  /** Use the pod's service account. */
  inCluster?: boolean
  /** Explicit namespace; else the service account's, else the kubeconfig context's, else `default`. */
  namespace?: string
  /** Per-call time limit; default 10 s. */
  timeoutMs?: number
  /** Keep a watched copy of the notebook pods (default true); false lists pods on every read. */
  cache?: boolean
  log?: KubernetesLogger
  observe?: UpstreamObserver
}

const GRACE_PERIOD_SECONDS = 30

function podTime(pod: V1Pod): number {
  const created = pod.metadata?.creationTimestamp
  return created ? new Date(created).getTime() : 0
}

/** Of several pods for one server (an old one still terminating, a new one starting), the live, newest one. */
function preferred(pods: V1Pod[]): V1Pod | undefined {
  return [...pods].sort((a, b) => {
    const deleting =
      Number(Boolean(a.metadata?.deletionTimestamp)) - Number(Boolean(b.metadata?.deletionTimestamp))
    return deleting !== 0 ? deleting : podTime(b) - podTime(a)
  })[0]
}

/** Finds a server's pod among the user's pods: by the pod name from the hub's state, else by annotation. */
function podOfServer(server: ServerRef, pods: V1Pod[]): V1Pod | undefined {
  const annotated = (pod: V1Pod) => pod.metadata?.annotations?.[SERVERNAME_ANNOTATION]
  if (server.podName) {
    const named = pods.find(
      (pod) =>
        pod.metadata?.name === server.podName &&
        (annotated(pod) === undefined || annotated(pod) === server.name),
    )
    if (named) return named
  }
  return preferred(pods.filter((pod) => annotated(pod) === server.name))
}

/** PodInspector and LogSource over the Kubernetes API. */
export class KubernetesPods implements PodInspector, LogSource, PodLaunchSource {
  readonly upstream = 'Kubernetes'
  readonly namespace: string
  /** The core/v1 client, shared with the session volume store. */
  readonly api: CoreV1Api
  private readonly log?: KubernetesLogger
  private readonly onClose?: () => void
  private readonly observe?: UpstreamObserver
  /** The watched copy of the pods, when there is one. */
  readonly reflector?: PodReflector

  constructor(options: KubernetesPodsOptions) {
    this.api = options.api
    this.namespace = options.namespace
    this.log = options.log
    this.reflector = options.reflector
    this.onClose = options.onClose
    this.observe = options.observe
  }

  /**
   * The user's pods: those labelled with the escaped user name and, where KubeSpawner recorded
   * the unescaped name, labelled for exactly this user (escaping lower-cases, so `Alice` and
   * `alice` share a label value).
   */
  private async userPods(username: string): Promise<V1Pod[]> {
    const label = escapeUsername(username)
    if (!isLabelValue(label)) return []
    const items = this.reflector?.synced ? this.reflector.list() : await this.listPods(label)
    return items.filter((pod) => {
      const labels = pod.metadata?.labels ?? {}
      const hubName = pod.metadata?.annotations?.[HUB_USERNAME_ANNOTATION]
      return labels[USERNAME_LABEL] === label && (hubName === undefined || hubName === username)
    })
  }

  private async listPods(label: string): Promise<V1Pod[]> {
    try {
      const list = await observeCall(this.observe, LIST_PODS, () =>
        this.api.listNamespacedPod({
          namespace: this.namespace,
          labelSelector: `${USERNAME_LABEL}=${label}`,
        }),
      )
      return list.items
    } catch (error) {
      throw toUpstreamError(error, 'list pods')
    }
  }

  /** Events about the given pods, with one call at most. A failure only costs detail, so it is logged, not thrown. */
  private async eventsAbout(pods: V1Pod[]): Promise<CoreV1Event[]> {
    const [only] = pods
    if (!only) return []
    const fieldSelector =
      pods.length === 1
        ? `involvedObject.kind=Pod,involvedObject.name=${only.metadata?.name ?? ''}`
        : 'involvedObject.kind=Pod,type=Warning'
    try {
      const list = await observeCall(this.observe, LIST_EVENTS, () =>
        this.api.listNamespacedEvent({ namespace: this.namespace, fieldSelector }),
      )
      return list.items
    } catch (error) {
      const failure = toUpstreamError(error, 'list events')
      this.log?.warn({ upstream: 'Kubernetes', detail: failure.detail }, 'pod events are unavailable')
      return []
    }
  }

  /** All notebook pods: the watched copy when current, else one list. */
  async allPods(): Promise<V1Pod[]> {
    if (this.reflector?.synced) return this.reflector.list()
    try {
      const list = await observeCall(this.observe, LIST_PODS, () =>
        this.api.listNamespacedPod({ namespace: this.namespace, labelSelector: USERNAME_LABEL }),
      )
      return list.items
    } catch (error) {
      throw toUpstreamError(error, 'list pods')
    }
  }

  version(): number | undefined {
    return this.reflector?.synced ? this.reflector.version : undefined
  }

  /** Pod changes as hub users: the unescaped name KubeSpawner records on each pod. */
  get changes(): PodChanges | undefined {
    const { reflector } = this
    if (!reflector) return undefined
    return {
      get watching() {
        return reflector.synced
      },
      onUserPodsChanged: (listener) =>
        reflector.subscribe((pod) => {
          if (!pod) return listener(null)
          const user = pod.metadata?.annotations?.[HUB_USERNAME_ANNOTATION]
          if (user) listener(user)
        }),
    }
  }

  async podsForUser(username: string, servers: ServerRef[]): Promise<Map<string, PodView>> {
    const views = new Map<string, PodView>()
    if (servers.length === 0) return views
    const pods = await this.userPods(username)
    const matched = new Map<string, V1Pod>()
    for (const server of servers) {
      const pod = podOfServer(server, pods)
      if (pod) matched.set(server.name, pod)
    }
    const waiting = [...new Set(matched.values())].filter(
      (pod) => !isPodReady(pod) && !pod.metadata?.deletionTimestamp,
    )
    const events = await this.eventsAbout(waiting)
    for (const [name, pod] of matched) {
      const uid = pod.metadata?.uid
      // A pod re-created under the same name must not inherit its predecessor's events.
      const own = events.filter(
        (e) =>
          e.involvedObject.name === pod.metadata?.name &&
          (!uid || !e.involvedObject.uid || e.involvedObject.uid === uid),
      )
      views.set(name, toPodView(pod, own))
    }
    return views
  }

  /**
   * A server's launch steps: its pod from the watched copy (or one list while the copy is not
   * current) and, while the pod is not ready, one event list by the pod's name.
   */
  async podLaunch(
    username: string,
    server: ServerRef & { autosave?: string; resumed?: boolean },
  ): Promise<PodLaunch | undefined> {
    const pod = podOfServer(server, await this.userPods(username))
    if (!pod) return undefined
    const uid = pod.metadata?.uid
    const events = isPodReady(pod)
      ? []
      : (await this.eventsAbout([pod])).filter(
          (e) => !uid || !e.involvedObject.uid || e.involvedObject.uid === uid,
        )
    return podLaunch(pod, events, server.autosave, server.resumed)
  }

  async readLogs(request: LogRequest): Promise<string[]> {
    const pods = await this.userPods(request.username)
    const pod = podOfServer({ name: request.serverName, podName: request.podName }, pods)
    const noPod = [`The server ${request.serverName} has no pod yet, or it has already stopped.`]
    const name = pod?.metadata?.name
    if (!pod || !name) return noPod
    const container = notebookContainer(pod)?.name ?? NOTEBOOK_CONTAINER
    let text: string
    try {
      text = await observeCall(this.observe, READ_POD_LOG, () =>
        this.api.readNamespacedPodLog({
          name,
          namespace: this.namespace,
          container,
          follow: false,
          ...(request.maxLines > 0 ? { tailLines: request.maxLines } : {}),
        }),
      )
    } catch (error) {
      const status = httpStatus(error)
      if (status === 404) return noPod
      if (status === 400) {
        // The kubelet explains why there is nothing to read: a container waiting or gone.
        const message = statusBody(error)?.message ?? ''
        const waiting = /is waiting to start[:-]?\s*(.*)$/s.exec(message)
        if (waiting) {
          const why = waiting[1]?.trim()
          return [
            `The notebook container has not started yet${why ? ` (${why})` : ''}, so there are no logs.`,
          ]
        }
        return [
          `There are no logs to show: ${message.replace(/\.$/, '') || 'the container is not available'}.`,
        ]
      }
      throw toUpstreamError(error, 'read pod logs')
    }
    if (typeof text !== 'string' || text === '') return []
    const lines = text.split('\n')
    if (lines[lines.length - 1] === '') lines.pop()
    return lines
  }

  async deletePod(podName: string): Promise<void> {
    try {
      await observeCall(this.observe, DELETE_POD, () =>
        this.api.deleteNamespacedPod({
          name: podName,
          namespace: this.namespace,
          gracePeriodSeconds: GRACE_PERIOD_SECONDS,
        }),
      )
    } catch (error) {
      if (httpStatus(error) === 404) return
      throw toUpstreamError(error, 'delete pod')
    }
  }

  async ping(): Promise<void> {
    try {
      await observeCall(this.observe, LIST_PODS, () =>
        this.api.listNamespacedPod({ namespace: this.namespace, limit: 1 }),
      )
    } catch (error) {
      throw toUpstreamError(error, 'list pods')
    }
  }

  close(): void {
    this.reflector?.stop()
    this.onClose?.()
  }
}

/**
 * Sets a time limit on every call, and reuses connections: client-node makes a new agent,
 * so a new TCP (and TLS) connection, for each request.
 */
function transport(timeoutMs: number): { middleware: Middleware; close: () => void } {
  let shared: http.Agent | undefined
  return {
    middleware: {
      async pre(context) {
        context.setSignal(AbortSignal.timeout(timeoutMs))
        const agent = context.getAgent()
        // Proxy agents subclass http.Agent; only plain ones are safe to copy.
        if (agent && (agent.constructor === https.Agent || agent.constructor === http.Agent)) {
          if (!shared) {
            const options = {
              ...(agent as http.Agent & { options: http.AgentOptions }).options,
              keepAlive: true,
            }
            shared = agent instanceof https.Agent ? new https.Agent(options) : new http.Agent(options)
          }
          context.setAgent(shared)
        }
        return context
      },
      async post(context) {
        return context
      },
    },
    close: () => shared?.destroy(),
  }
}

/** Loads the client configuration (kubeconfig file or service account) and resolves the namespace. */
export function createKubernetesPods(options: KubernetesClientOptions): KubernetesPods {
  const kc = new KubeConfig()
  if (options.kubeconfig) {
    try {
      kc.loadFromFile(options.kubeconfig)
    } catch {
      throw new ConfigError(
        'KUBECONFIG',
        `names a file that cannot be read as a kubeconfig: ${options.kubeconfig}`,
      )
    }
  } else if (options.inCluster) {
    kc.loadFromCluster()
  } else {
    throw new ConfigError('KUBECONFIG', 'is not set and the service does not run in a cluster.')
  }
  const cluster = kc.getCurrentCluster()
  if (!cluster) {
    throw new ConfigError('KUBECONFIG', `names a kubeconfig without a current cluster: ${options.kubeconfig}`)
  }
  // In a cluster, loadFromCluster puts the service account's namespace into the context.
  const namespace =
    options.namespace || kc.getContextObject(kc.getCurrentContext())?.namespace?.trim() || 'default'
  const { middleware, close } = transport(options.timeoutMs ?? 10_000)
  const api = new CoreV1Api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      promiseMiddleware: [middleware],
    }),
  )
  let reflector: PodReflector | undefined
  if (options.cache !== false) {
    reflector = new PodReflector({
      api,
      watch: new Watch(kc),
      namespace,
      labelSelector: USERNAME_LABEL,
      log: options.log,
      observe: options.observe,
    })
    reflector.start()
  }
  return new KubernetesPods({
    api,
    namespace,
    log: options.log,
    reflector,
    onClose: close,
    observe: options.observe,
  })
}
