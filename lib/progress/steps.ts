/**
 * The steps of a launch (the README's "Following a start"): their order, their progress figures, the event ids
 * every replica derives alike, and the sentences for the hub's progress messages and failures.
 */
import { PROGRESS_STEPS, type ProgressEvent, type ProgressStep } from '../../schemas/progress.js'

export { PROGRESS_STEPS, type ProgressEvent, type ProgressStep }

/** Fixed per step, so that `progress` never decreases and means the same on every replica. */
const STEP_PROGRESS: Record<ProgressStep, number> = {
  requested: 0,
  scheduled: 20,
  pulling: 40,
  cloning: 60,
  starting: 80,
  ready: 100,
  failed: 100,
}

export function stepIndex(step: ProgressStep): number {
  return PROGRESS_STEPS.indexOf(step)
}

export function isFinal(step: ProgressStep): boolean {
  return step === 'ready' || step === 'failed'
}

/** What a source says about a step; the tracker adds `step` and `progress`. */
export type StepDetail = Omit<ProgressEvent, 'step' | 'progress'>

export function progressEvent(step: ProgressStep, detail: StepDetail): ProgressEvent {
  return { step, progress: STEP_PROGRESS[step], ...detail }
}

/**
 * `<start>-<step number>`: the start is the server's start time in epoch milliseconds (the
 * hub's `started`), so the id of a step of one start is the same on every replica, and a new
 * start of the same server gives new ids.
 */
export function eventId(startKey: number, step: ProgressStep): string {
  return `${startKey}-${stepIndex(step)}`
}

/** The start and step number of an event id; undefined for anything else. */
export function parseEventId(id: string | undefined): { startKey: number; index: number } | undefined {
  const match = /^(\d+)-(\d)$/.exec(id?.trim() ?? '')
  if (!match) return undefined
  const index = Number(match[2])
  return index < PROGRESS_STEPS.length ? { startKey: Number(match[1]), index } : undefined
}

/** The step number of a Last-Event-ID of the same start; undefined for anything else. */
export function resumeAfter(lastEventId: string | undefined, startKey: number): number | undefined {
  const parsed = parseEventId(lastEventId)
  return parsed?.startKey === startKey ? parsed.index : undefined
}

/** The start key of a server: its start time in epoch milliseconds, 0 when the hub has none. */
export function startKeyOf(started: string | null | undefined): number {
  const ms = started ? Date.parse(started) : Number.NaN
  return Number.isNaN(ms) ? 0 : ms
}

/** One event of the hub's progress stream (`data:` JSON). */
export interface HubProgressEvent {
  progress?: number
  message?: string
  ready?: boolean
  failed?: boolean
  url?: string
}

/**
 * A step for a message of the hub's progress stream: the hub's first event, the local
 * spawner's messages (hub/local_config.py), and KubeSpawner's pod event lines
 * (`<time> [Normal] Pulling image "…"`). Undefined for messages that say nothing new.
 */
export function stepOfHubMessage(
  event: HubProgressEvent,
): { step: ProgressStep; detail: StepDetail } | undefined {
  const message = (event.message ?? '').trim()
  if (event.progress === 0 && /^Server requested$/i.test(message)) {
    return { step: 'requested', detail: { message: 'JupyterHub accepted the start of the server.' } }
  }
  const autosave = /^Restoring autosave (\S+?)[.…]*(?:\s|$)/.exec(message)
  if (autosave?.[1]) {
    return {
      step: 'cloning',
      detail: {
        message: `The repository is being cloned and your autosaved work restored (${autosave[1]}).`,
        autosave: autosave[1],
      },
    }
  }
  if (/^Resuming the kept working directory/.test(message)) {
    return {
      step: 'cloning',
      detail: { message: 'The working directory is resumed from its kept volume, as it was left: no clone.' },
    }
  }
  if (/^Cloning the repository/.test(message)) {
    return { step: 'cloning', detail: { message: 'The repository is being cloned.' } }
  }
  if (/^Starting the notebook server/.test(message)) {
    return { step: 'starting', detail: { message: 'The notebook server is starting.' } }
  }
  // KubeSpawner forwards the pod's events.
  if (/\[Normal\] Successfully assigned \S+ to (\S+)/.test(message)) {
    return { step: 'scheduled', detail: { message: 'A node was found for the server.' } }
  }
  const pulling = /\[Normal\] Pulling image "([^"]+)"/.exec(message)
  if (pulling?.[1]) {
    return {
      step: 'pulling',
      detail: { message: `The image ${pulling[1]} is being pulled.`, image: pulling[1] },
    }
  }
  if (/\[Normal\] Started container git-clone\b/.test(message)) {
    return { step: 'cloning', detail: { message: 'The repository is being cloned.' } }
  }
  if (/\[Normal\] Started container notebook\b/.test(message)) {
    return { step: 'starting', detail: { message: 'The notebook server is starting.' } }
  }
  return undefined
}

/** Why a start failed, in words, from the hub's "Spawn failed: …" and what else is known. */
export function failureCause(hubMessage: string | undefined, podWaiting?: PodWaiting): string {
  const reason = (hubMessage ?? '')
    .replace(/^Spawn failed:?\s*/i, '')
    .trim()
    .replace(/\.$/, '')
  if (/could not check out the repository|clone|cloning/i.test(reason)) {
    const detail = reason.replace(/^could not check out the repository:\s*/i, '')
    return `The repository could not be cloned: ${detail}.`
  }
  if (/timed? ?out|timeout|didn't respond|did not respond|failed to start in/i.test(reason)) {
    if (podWaiting?.kind === 'unschedulable') {
      return `The start timed out: no node has the requested resources. ${podWaiting.message}`
    }
    if (podWaiting?.kind === 'pulling') {
      return `The start timed out while the image was being pulled. ${podWaiting.message}`
    }
    return 'The start timed out: the server did not answer in time.'
  }
  if (/pull|image/i.test(reason)) return `The image cannot be pulled: ${reason}.`
  if (!reason) return 'The server failed to start.'
  return `The server failed to start: ${reason}.`
}

/** What a pod is waiting for, remembered to explain a later time-out. */
export interface PodWaiting {
  kind: 'unschedulable' | 'pulling' | 'other'
  message: string
}
