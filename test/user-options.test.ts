/**
 * The service and the hub read one `user_options` contract: what the launcher may send (the
 * TypeBox shape) is what the hub's parser (`chart/files/renku_options.py`) accepts, key for key.
 */
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import { Value } from '@sinclair/typebox/value'
import t from 'tap'
import { bundledServerOptionsPath } from '../lib/core/config.js'
import { type UserOptions, UserOptionsSchema } from '../schemas/user-options.js'

const execFileAsync = promisify(execFile)
const CHART_FILES = path.resolve(import.meta.dirname, '..', 'chart', 'files')

/** The hub's verdict on some user options: the parsed launch, or its refusal. */
async function hubParses(options: unknown): Promise<{ ok: boolean; detail: string }> {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(CHART_FILES)})`,
    'import renku_options as o',
    `specs = o.load_server_options(${JSON.stringify(bundledServerOptionsPath)})`,
    'try:',
    '    launch = o.parse_user_options(json.loads(sys.argv[1]), specs)',
    '    print(json.dumps({"ok": True, "detail": launch.commit_sha}))',
    'except o.SpawnRefused as refused:',
    '    print(json.dumps({"ok": False, "detail": str(refused)}))',
  ].join('\n')
  const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', script, JSON.stringify(options)])
  return JSON.parse(stdout) as { ok: boolean; detail: string }
}

const launch: UserOptions = {
  namespace: 'demo-group',
  project: 'demo-project',
  branch: 'master',
  commit_sha: 'a'.repeat(40),
  project_id: 7,
  notebook: null,
  image: 'registry.example.org/demo-group/demo-project:aaaaaaa',
  default_image_used: false,
  repository: 'https://gitlab.example.org/demo-group/demo-project.git',
  server_options: { cpu_request: 0.5, mem_request: '1G', defaultUrl: '/lab', lfs_auto_fetch: false },
}

t.test('the keys the service may send are the keys the hub knows', async (t) => {
  const { stdout } = await execFileAsync('/usr/bin/python3', [
    '-c',
    `import sys, json; sys.path.insert(0, ${JSON.stringify(CHART_FILES)}); import renku_options as o; print(json.dumps(sorted(o.USER_OPTION_KEYS)))`,
  ])
  t.same(JSON.parse(stdout), Object.keys(UserOptionsSchema.properties).sort())
})

t.test('a launch the service builds is one the hub accepts', async (t) => {
  t.ok(Value.Check(UserOptionsSchema, launch), 'valid for the service')
  t.same(await hubParses(launch), { ok: true, detail: launch.commit_sha })
  const restoring = { ...launch, autosave: `renku/autosave/alice/master/aaaaaaa/bbbbbbb` }
  t.ok(Value.Check(UserOptionsSchema, restoring))
  t.equal((await hubParses(restoring)).ok, true, 'with an autosave to restore')
  for (const volume of ['new', 'resumed'] as const) {
    const onVolume = { ...launch, volume }
    t.ok(Value.Check(UserOptionsSchema, onVolume))
    t.equal((await hubParses(onVolume)).ok, true, `on a ${volume} session volume`)
  }
})

t.test('what one side refuses, the other refuses too', async (t) => {
  for (const [what, bad] of [
    ['a short commit', { ...launch, commit_sha: 'abc1234' }],
    ['an unknown key', { ...launch, extra: 1 }],
    ['a project id that is not a number', { ...launch, project_id: '7' }],
    ['no repository', Object.fromEntries(Object.entries(launch).filter(([key]) => key !== 'repository'))],
    ['a volume that is neither new nor resumed', { ...launch, volume: 'kept' }],
  ] as const) {
    t.notOk(Value.Check(UserOptionsSchema, bad), `the service's shape refuses ${what}`)
    t.equal((await hubParses(bad)).ok, false, `the hub refuses ${what}`)
  }
})
