/**
 * Turns a pod (and the events about it) into the PodView a user sees: whether the server is
 * ready, failed or going away, and why not, in sentences rather than Kubernetes reasons.
 */
import type { CoreV1Event, V1Container, V1ContainerStatus, V1Pod } from '@kubernetes/client-node'
import type { PodView } from '../servers/pods.js'
import { NOTEBOOK_CONTAINER } from './labels.js'

/** Why a pod is not ready: the unmet step (a pod condition type, or `Terminating`), a reason and a sentence. */
interface Explanation {
  step: string
  reason: string
  message: string
  failed?: boolean
}

// client-node turns timestamps into Dates; fixtures and stand-ins may hand over strings.
type Time = Date | string | null | undefined

function millis(time: Time): number {
  if (!time) return 0
  const ms = new Date(time).getTime()
  return Number.isNaN(ms) ? 0 : ms
}

/** When an event last happened: scheduler events read through core/v1 carry only `eventTime`. */
export function eventMillis(event: CoreV1Event): number {
  return millis(event.lastTimestamp ?? event.eventTime ?? event.metadata?.creationTimestamp)
}

/** Oldest first. */
export function sortEvents(events: CoreV1Event[]): CoreV1Event[] {
  return [...events].sort((a, b) => eventMillis(a) - eventMillis(b))
}

function latest(events: CoreV1Event[], test: (event: CoreV1Event) => boolean): CoreV1Event | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const event = events[i]
    if (event && test(event)) return event
  }
  return undefined
}

/** The container that runs the notebook; the first one when none is called `notebook`. */
export function notebookContainer(pod: V1Pod): V1Container | undefined {
  const containers = pod.spec?.containers ?? []
  return containers.find((c) => c.name === NOTEBOOK_CONTAINER) ?? containers[0]
}

/** All containers ready and the pod not being deleted. */
export function isPodReady(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false
  const statuses = pod.status?.containerStatuses ?? []
  const containers = pod.spec?.containers ?? []
  if (statuses.length === 0) return false
  const names = containers.length > 0 ? containers.map((c) => c.name) : statuses.map((s) => s.name)
  return names.every((name) => statuses.find((s) => s.name === name)?.ready === true)
}

/** `500m` → `0.5`; whole numbers and anything else as Kubernetes gives them. */
export function cpuQuantity(quantity: string): string {
  const milli = /^(\d+)m$/.exec(quantity)
  return milli?.[1] ? String(Number(milli[1]) / 1000) : quantity
}

function workVolumeSize(pod: V1Pod, container: V1Container): string | undefined {
  const mounts = container.volumeMounts ?? []
  const sized = (pod.spec?.volumes ?? []).filter(
    (v) => v.emptyDir?.sizeLimit && mounts.some((m) => m.name === v.name),
  )
  const work = sized.find((v) => mounts.some((m) => m.name === v.name && /\/work\/?$/.test(m.mountPath)))
  return (work ?? sized[0])?.emptyDir?.sizeLimit
}

/** What the notebook container asked for, in the units of the server options (the OpenAPI `Server` schema). */
export function podResources(pod: V1Pod): PodView['resources'] {
  const container = notebookContainer(pod)
  if (!container) return undefined
  const requests = container.resources?.requests ?? {}
  const limits = container.resources?.limits ?? {}
  const resources: NonNullable<PodView['resources']> = {}
  const cpu = requests.cpu ?? limits.cpu
  if (cpu) resources.cpu = cpuQuantity(cpu)
  const memory = requests.memory ?? limits.memory
  if (memory) resources.memory = memory
  const storage =
    workVolumeSize(pod, container) ?? requests['ephemeral-storage'] ?? limits['ephemeral-storage']
  if (storage) resources.storage = storage
  // Extended resources are set as limits; a container without one has no GPU.
  resources.gpu = limits['nvidia.com/gpu'] ?? requests['nvidia.com/gpu'] ?? '0'
  return resources
}

function list(words: string[]): string {
  if (words.length <= 1) return words.join('')
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`
}

const resourceWords: Record<string, string> = {
  cpu: 'CPU',
  memory: 'memory',
  'nvidia.com/gpu': 'GPUs',
  'ephemeral-storage': 'storage',
  pods: 'pod slots',
}

function unscheduled(detail: string | undefined): string {
  // The scheduler appends what preemption would achieve, which only confuses a user.
  const reason = detail
    ?.replace(/\s*preemption:.*$/s, '')
    .trim()
    .replace(/\.$/, '')
  const missing = [
    ...new Set([...(reason ?? '').matchAll(/Insufficient ([\w./-]+)/g)].map((m) => m[1] ?? '')),
  ]
  if (missing.length > 0) {
    const words = missing.map((r) => resourceWords[r] ?? r)
    return `The cluster does not have enough free ${list(words)} for the server right now; it starts as soon as a node has room (${reason}).`
  }
  return reason
    ? `The server is waiting for a node to run on (${reason}).`
    : 'The server is waiting for a node to run on.'
}

function pullCause(text: string | undefined): string {
  if (!text) return ''
  if (/does not exist or may require/i.test(text)) return ': it does not exist or access to it was denied'
  if (/not found|manifest unknown|no such image/i.test(text)) return ': it does not exist'
  if (/unauthorized|denied|authentication required|forbidden|insufficient_scope/i.test(text)) {
    return ': access to it was denied'
  }
  if (/no such host|connection refused|i\/o timeout|timed out|network is unreachable/i.test(text)) {
    return ': the registry could not be reached'
  }
  return ''
}

function imageOf(pod: V1Pod, status: V1ContainerStatus): string {
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]
  return containers.find((c) => c.name === status.name)?.image ?? status.image
}

function who(name: string, init: boolean): string {
  if (init) return `The setup step "${name}"`
  return name === NOTEBOOK_CONTAINER ? 'The notebook container' : `The container "${name}"`
}

function times(n: number): string {
  return n === 1 ? 'once' : `${n} times`
}

/** A container that cannot start and will not without someone changing something. */
function containerProblem(
  pod: V1Pod,
  status: V1ContainerStatus,
  init: boolean,
  events: CoreV1Event[],
): Explanation | undefined {
  const waiting = status.state?.waiting
  if (!waiting?.reason) return undefined
  const step = init ? 'Initialized' : 'ContainersReady'
  const reason = waiting.reason
  switch (reason) {
    case 'ErrImagePull':
    case 'ImagePullBackOff':
    case 'ErrImageNeverPull': {
      const image = imageOf(pod, status)
      const failure =
        latest(events, (e) => e.reason === 'Failed' && (e.message ?? '').includes(`pull image "${image}"`)) ??
        latest(events, (e) => e.reason === 'Failed' && /pull image/i.test(e.message ?? ''))
      const cause = pullCause(failure?.message ?? waiting.message)
      return { step, reason, failed: true, message: `The image ${image} could not be pulled${cause}.` }
    }
    case 'InvalidImageName':
      return { step, reason, failed: true, message: `The image name ${imageOf(pod, status)} is not valid.` }
    case 'CrashLoopBackOff': {
      const last = status.lastState?.terminated
      const exit =
        last?.reason === 'OOMKilled'
          ? 'it ran out of memory'
          : last
            ? `it exited with code ${last.exitCode}`
            : ''
      const restarts = `has been restarted ${times(status.restartCount)}`
      const logs = init ? '' : ' Its logs may say why.'
      return {
        step,
        reason,
        failed: true,
        message: `${who(status.name, init)} keeps crashing: ${exit ? `${exit} and ` : ''}${restarts}.${logs}`,
      }
    }
    case 'CreateContainerConfigError':
    case 'CreateContainerError':
    case 'RunContainerError':
      return {
        step,
        reason,
        failed: true,
        message: `${who(status.name, init)} cannot be started: ${(waiting.message ?? reason).replace(/\.$/, '')}.`,
      }
    default:
      return undefined
  }
}

function failedPod(pod: V1Pod): Explanation {
  const statuses = pod.status?.containerStatuses ?? []
  const notebook = statuses.find((s) => s.name === NOTEBOOK_CONTAINER) ?? statuses[0]
  const ended = notebook?.state?.terminated ?? notebook?.lastState?.terminated
  const reason = pod.status?.reason ?? ended?.reason ?? 'Failed'
  let message: string
  if (pod.status?.reason === 'Evicted') {
    message = `The server was evicted from its node${pod.status.message ? `: ${pod.status.message.trim()}` : '.'}`
  } else if (ended?.reason === 'OOMKilled') {
    message = 'The server ran out of memory and was stopped.'
  } else if (ended) {
    message = `The server stopped with an error (exit code ${ended.exitCode}).`
  } else {
    message = `The server failed${pod.status?.message ? `: ${pod.status.message.trim()}` : '.'}`
  }
  return { step: firstUnmetCondition(pod) ?? 'Ready', reason, message, failed: true }
}

const conditionOrder = ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']

function firstUnmetCondition(pod: V1Pod): string | undefined {
  const conditions = pod.status?.conditions ?? []
  return conditionOrder.find((type) => conditions.find((c) => c.type === type)?.status !== 'True')
}

function withWarning(message: string, warning: CoreV1Event | undefined): string {
  if (!warning?.message) return message
  return `${message} Kubernetes reports: ${warning.message.trim()}`
}

function explain(pod: V1Pod, events: CoreV1Event[]): Explanation | undefined {
  const status = pod.status ?? {}
  const condition = (type: string) => status.conditions?.find((c) => c.type === type)

  if (pod.metadata?.deletionTimestamp) {
    return { step: 'Terminating', reason: 'Terminating', message: 'The server is shutting down.' }
  }
  if (status.phase === 'Failed') return failedPod(pod)
  if (status.phase === 'Succeeded') {
    return {
      step: 'Ready',
      reason: 'Completed',
      message: 'The server has stopped: its notebook process exited.',
    }
  }

  const scheduled = condition('PodScheduled')
  if (!pod.spec?.nodeName && scheduled?.status !== 'True') {
    const event = latest(events, (e) => e.reason === 'FailedScheduling')
    return {
      step: 'PodScheduled',
      reason: scheduled?.reason ?? 'Pending',
      message: unscheduled(event?.message ?? scheduled?.message),
    }
  }

  const initStatuses = status.initContainerStatuses ?? []
  const statuses = status.containerStatuses ?? []
  for (const s of initStatuses) {
    const problem = containerProblem(pod, s, true, events)
    if (problem) return problem
  }
  for (const s of statuses) {
    const problem = containerProblem(pod, s, false, events)
    if (problem) return problem
  }

  if (status.phase === 'Unknown') {
    return {
      step: firstUnmetCondition(pod) ?? 'Ready',
      reason: status.reason ?? 'NodeLost',
      message: 'The node the server runs on cannot be reached.',
    }
  }

  // Warnings other than scheduling ones (mounts, sandbox, probes) say why a step takes long.
  const warning = latest(events, (e) => e.type === 'Warning' && e.reason !== 'FailedScheduling')
  const initialized = condition('Initialized')
  const pending = initStatuses.find((s) => s.state?.terminated?.exitCode !== 0)
  if (pending || (initialized && initialized.status !== 'True')) {
    const name = pending?.name
    return {
      step: 'Initialized',
      reason: initialized?.reason ?? 'ContainersNotInitialized',
      message: withWarning(
        name ? `The server is being prepared (setup step "${name}").` : 'The server is being prepared.',
        warning,
      ),
    }
  }

  const notebook = statuses.find((s) => s.name === NOTEBOOK_CONTAINER) ?? statuses[0]
  if (!notebook || notebook.state?.waiting || !notebook.state) {
    const pulling = latest(events, (e) => e.reason === 'Pulling')
    // The setup step's image is pulled too: only what followed the same container's pull counts.
    const pulled = latest(
      events,
      (e) =>
        e.involvedObject.fieldPath === pulling?.involvedObject.fieldPath &&
        (e.reason === 'Pulled' || e.reason === 'Created' || e.reason === 'Started'),
    )
    const image = /image "([^"]+)"/.exec(pulling?.message ?? '')?.[1]
    const message =
      pulling && image && (!pulled || eventMillis(pulled) < eventMillis(pulling))
        ? `The image ${image} is being pulled.`
        : "The server's container is being created."
    return {
      step: 'ContainersReady',
      reason: notebook?.state?.waiting?.reason ?? 'ContainerCreating',
      message: withWarning(message, warning),
    }
  }

  if (!isPodReady(pod)) {
    const unhealthy = latest(events, (e) => e.type === 'Warning' && e.reason === 'Unhealthy')
    const terminated = notebook.state?.terminated
    const message = terminated
      ? `The notebook container has stopped (exit code ${terminated.exitCode}).`
      : 'The server is running but not ready yet.'
    return {
      step: firstUnmetCondition(pod) ?? 'ContainersReady',
      reason: condition('ContainersReady')?.reason ?? condition('Ready')?.reason ?? 'ContainersNotReady',
      message: withWarning(message, unhealthy),
    }
  }
  return undefined
}

/** The PodView of a pod; `events` are the events about it, in any order. */
export function toPodView(pod: V1Pod, events: CoreV1Event[] = []): PodView {
  const ready = isPodReady(pod)
  const explanation = ready ? undefined : explain(pod, sortEvents(events))
  const phase = pod.status?.phase ?? 'Unknown'
  const view: PodView = {
    name: pod.metadata?.name ?? '',
    phase,
    ready,
    terminating: Boolean(pod.metadata?.deletionTimestamp),
    failed: phase === 'Failed' || explanation?.failed === true,
    step: explanation?.step ?? (ready ? 'Ready' : undefined),
    resources: podResources(pod),
    annotations: { ...(pod.metadata?.annotations ?? {}) },
    labels: { ...(pod.metadata?.labels ?? {}) },
  }
  if (explanation) {
    view.message = explanation.message
    view.reason = explanation.reason
  }
  return view
}
