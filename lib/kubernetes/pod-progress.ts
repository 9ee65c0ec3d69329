/**
 * The launch steps a pod has reached (the README's "Following a start"), read from its state and the events
 * about it, so that any replica, joining at any time, derives the same steps: scheduled (a
 * node), pulling (a `Pulling` event), cloning (the clone init container ran), starting (the
 * notebook container ran). A pod that cannot start (pull failure, crash loop) gives a failure.
 */
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node'
import type { ProgressStep, StepDetail } from '../progress/steps.js'
import type { PodLaunch } from '../servers/pods.js'
import { NOTEBOOK_CONTAINER } from './labels.js'
import { sortEvents, toPodView } from './pod-view.js'

function nodeOf(pod: V1Pod, events: CoreV1Event[]): string | undefined {
  if (pod.spec?.nodeName) return pod.spec.nodeName
  const scheduled = events.find((e) => e.reason === 'Scheduled')
  return / to (\S+)$/.exec(scheduled?.message?.trim() ?? '')?.[1]
}

const imageOfPull = (event: CoreV1Event) => /image "([^"]+)"/.exec(event.message ?? '')?.[1]

/** Where a container has got to: it ran (or runs), per its status or a `Started` event. */
function hasRun(pod: V1Pod, events: CoreV1Event[], name: string, init: boolean): boolean {
  const statuses = (init ? pod.status?.initContainerStatuses : pod.status?.containerStatuses) ?? []
  const status = statuses.find((s) => s.name === name)
  if (status?.state?.running || status?.state?.terminated || status?.lastState?.terminated) return true
  const field = `spec.${init ? 'initContainers' : 'containers'}{${name}}`
  return events.some((e) => e.reason === 'Started' && e.involvedObject.fieldPath === field)
}

/**
 * The steps of the pod's launch, in order. `autosave` is the autosave branch the launch
 * restores, if any (the server's `renku.io/autosave` annotation); `resumed` says the launch
 * starts on the server's kept volume (`renku.io/volume: "resumed"`), where the clone step
 * leaves the working directory as it is.
 */
export function podLaunch(
  pod: V1Pod,
  unsortedEvents: CoreV1Event[] = [],
  autosave?: string,
  resumed = false,
): PodLaunch {
  const events = sortEvents(unsortedEvents)
  const view = toPodView(pod, events)
  const reached: { step: ProgressStep; detail: StepDetail }[] = []
  const waitingForNode = view.step === 'PodScheduled' && !view.failed
  reached.push({
    step: 'requested',
    detail: {
      message: waitingForNode
        ? `JupyterHub accepted the start. ${view.message ?? 'The server is waiting for a node to run on.'}`
        : 'JupyterHub accepted the start of the server.',
    },
  })

  const node = nodeOf(pod, events)
  const scheduled = pod.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'True')
  if (node || scheduled) {
    reached.push({
      step: 'scheduled',
      detail: {
        message: node
          ? `The server was given a node to run on (${node}).`
          : 'The server was given a node to run on.',
      },
    })
  }

  const pulls = events.filter((e) => e.reason === 'Pulling' && imageOfPull(e))
  const notebookField = `spec.containers{${NOTEBOOK_CONTAINER}}`
  const pull = pulls.find((e) => e.involvedObject.fieldPath === notebookField) ?? pulls[0]
  const image = pull && imageOfPull(pull)
  if (image) {
    reached.push({ step: 'pulling', detail: { message: `The image ${image} is being pulled.`, image } })
  }

  const cloneContainer = pod.spec?.initContainers?.[0]?.name
  if (cloneContainer && hasRun(pod, events, cloneContainer, true)) {
    reached.push({
      step: 'cloning',
      detail: resumed
        ? { message: 'The working directory is resumed from its kept volume, as it was left: no clone.' }
        : autosave
          ? {
              message: `The repository is being cloned and your autosaved work restored (${autosave}).`,
              autosave,
            }
          : { message: 'The repository is being cloned.' },
    })
  }

  const notebook =
    pod.spec?.containers?.find((c) => c.name === NOTEBOOK_CONTAINER) ?? pod.spec?.containers?.[0]
  if (notebook && hasRun(pod, events, notebook.name, false)) {
    reached.push({ step: 'starting', detail: { message: 'The notebook server is starting.' } })
  }

  const launch: PodLaunch = { reached, ready: view.ready }
  if (view.failed && !view.terminating) {
    const message = view.message ?? 'The server failed to start.'
    // A setup step that cannot run is the clone (the only init container).
    launch.failure = view.step === 'Initialized' ? `The repository could not be cloned. ${message}` : message
  } else if (!view.ready && view.message) {
    launch.waiting = {
      kind: waitingForNode ? 'unschedulable' : /being pulled/.test(view.message) ? 'pulling' : 'other',
      message: view.message,
    }
  }
  return launch
}
