/**
 * What a pod's launch becomes on the progress stream (the README's "Following a start"): each stage of a pod
 * walking from no node to ready (or to a pull failure) gives the right steps and sentences,
 * and the hub's progress messages map to the same steps.
 */
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node'
import t from 'tap'
import { type LaunchStage, launchStage } from '../../dev/fixtures/kubernetes/index.js'
import { podLaunch } from '../../lib/kubernetes/pod-progress.js'
import { failureCause, stepOfHubMessage } from '../../lib/progress/steps.js'

function launchAt(stage: LaunchStage, autosave?: string, resumed?: boolean) {
  const { pod, events } = launchStage(stage, 'alice', 'my-project-1a2b3c4d')
  return podLaunch(pod as unknown as V1Pod, events as unknown as CoreV1Event[], autosave, resumed)
}
const stepsOf = (launch: ReturnType<typeof podLaunch>) => launch.reached.map((r) => r.step)
const detail = (launch: ReturnType<typeof podLaunch>, step: string) =>
  launch.reached.find((r) => r.step === step)?.detail

t.test('a pod walking from no node to ready', async (t) => {
  const unschedulable = launchAt('unschedulable')
  t.same(stepsOf(unschedulable), ['requested'], 'no node: only requested')
  t.match(
    detail(unschedulable, 'requested')?.message,
    /^JupyterHub accepted the start\. The cluster does not have enough free CPU and GPUs for the server right now; it starts as soon as a node has room/,
  )
  t.same(unschedulable.waiting?.kind, 'unschedulable')
  t.equal(unschedulable.failure, undefined, 'waiting for a node is not a failure by itself')
  t.match(
    failureCause('Spawn failed: Timeout', unschedulable.waiting),
    /^The start timed out: no node has the requested resources\. The cluster does not have enough free CPU and GPUs/,
    'a time-out while waiting for a node says so',
  )

  const scheduled = launchAt('scheduled')
  t.same(stepsOf(scheduled), ['requested', 'scheduled'])
  t.same(detail(scheduled, 'requested'), { message: 'JupyterHub accepted the start of the server.' })
  t.same(detail(scheduled, 'scheduled'), { message: 'The server was given a node to run on (worker-2).' })

  const pulling = launchAt('pulling')
  t.same(stepsOf(pulling), ['requested', 'scheduled', 'pulling'])
  t.same(detail(pulling, 'pulling'), {
    message: 'The image renku/git-clone:0.8.2 is being pulled.',
    image: 'renku/git-clone:0.8.2',
  })

  const cloning = launchAt('cloning')
  t.same(stepsOf(cloning), ['requested', 'scheduled', 'pulling', 'cloning'], 'the clone step runs')
  t.same(detail(cloning, 'cloning'), { message: 'The repository is being cloned.' })
  t.same(detail(launchAt('cloning', 'renku/autosave/alice/master/1a2b3c4/5d6e7f8'), 'cloning'), {
    message:
      'The repository is being cloned and your autosaved work restored (renku/autosave/alice/master/1a2b3c4/5d6e7f8).',
    autosave: 'renku/autosave/alice/master/1a2b3c4/5d6e7f8',
  })

  t.same(detail(launchAt('cloning', undefined, true), 'cloning'), {
    message: 'The working directory is resumed from its kept volume, as it was left: no clone.',
  })

  const starting = launchAt('starting')
  t.same(
    stepsOf(starting),
    ['requested', 'scheduled', 'cloning', 'starting'],
    'the image was on the node: no pull',
  )
  t.same(detail(starting, 'starting'), { message: 'The notebook server is starting.' })
  t.equal(starting.ready, false)
  t.equal(starting.failure, undefined)

  const ready = launchAt('ready')
  t.equal(ready.ready, true, 'ready (the hub says the last word, with the url)')
  t.equal(ready.failure, undefined)
})

t.test('a pod that cannot pull its image fails, saying which and why', async (t) => {
  const failed = launchAt('pull-failed')
  t.same(stepsOf(failed), ['requested', 'scheduled', 'pulling', 'cloning'])
  t.same(detail(failed, 'pulling'), {
    message: 'The image registry.example.com/science/broken-image:9c0d1e2 is being pulled.',
    image: 'registry.example.com/science/broken-image:9c0d1e2',
  })
  t.equal(
    failed.failure,
    'The image registry.example.com/science/broken-image:9c0d1e2 could not be pulled: it does not exist.',
  )
})

t.test('a clone step that keeps failing is a failed clone', async (t) => {
  const { pod, events } = launchStage('cloning', 'alice', 'my-project-1a2b3c4d')
  const [status] = pod.status?.initContainerStatuses ?? []
  if (!status) throw new Error('no init container status')
  Object.assign(status, {
    state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 20s restarting failed container' } },
    lastState: { terminated: { exitCode: 128, reason: 'Error' } },
    restartCount: 3,
  })
  const launch = podLaunch(pod as unknown as V1Pod, events as unknown as CoreV1Event[])
  t.match(launch.failure, /^The repository could not be cloned\. The setup step "git-clone" keeps crashing/)
})

t.test("the hub's progress messages", async (t) => {
  const cases: [object, string | undefined, RegExp?][] = [
    [{ progress: 0, message: 'Server requested' }, 'requested'],
    [{ progress: 60, message: 'Cloning the repository https://gitlab/x.git at 1a2b3c4' }, 'cloning'],
    [
      {
        progress: 60,
        message: 'Restoring autosave renku/autosave/a/master/1a2b3c4/5d6e7f8 into a fresh clone',
      },
      'cloning',
      /autosaved work restored \(renku\/autosave\/a\/master\/1a2b3c4\/5d6e7f8\)/,
    ],
    [
      { progress: 60, message: 'Resuming the kept working directory' },
      'cloning',
      /resumed from its kept volume, as it was left: no clone/,
    ],
    [{ progress: 80, message: 'Starting the notebook server' }, 'starting'],
    // KubeSpawner forwards pod events.
    [
      { message: '2026-01-05T09:01:00Z [Normal] Successfully assigned renku/jupyter-a to worker-2' },
      'scheduled',
    ],
    [
      { message: '2026-01-05T09:01:01Z [Normal] Pulling image "renku/singleuser:0.4"' },
      'pulling',
      /renku\/singleuser:0\.4/,
    ],
    [{ message: '2026-01-05T09:01:10Z [Normal] Started container git-clone' }, 'cloning'],
    [{ message: '2026-01-05T09:01:20Z [Normal] Started container notebook' }, 'starting'],
    [{ progress: 50, message: 'Spawning server...' }, undefined],
  ]
  for (const [event, step, message] of cases) {
    const mapped = stepOfHubMessage(event)
    t.equal(mapped?.step, step, JSON.stringify(event))
    if (message) t.match(mapped?.detail.message, message)
  }
  t.equal(
    failureCause('Spawn failed: could not check out the repository: no such commit'),
    'The repository could not be cloned: no such commit.',
  )
  t.equal(
    failureCause("Spawn failed: Server at http://127.0.0.1:5/user/a/b/ didn't respond in 30 seconds"),
    'The start timed out: the server did not answer in time.',
  )
  t.equal(failureCause('Spawn failed: something odd'), 'The server failed to start: something odd.')
})
