// Static checks of the Helm chart, for machines without helm: every value a
// template reads exists, the values files satisfy the schema, the RBAC grants
// exactly what the service needs, and the jupyterhub values point at this chart.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv } from 'ajv'
import t from 'tap'
import { parse } from 'yaml'
import { isObject, merge, type Tree } from '../support/helm-values.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const chart = join(root, 'chart')
const templatesDir = join(chart, 'templates')

const readYaml = (path: string): Tree => parse(readFileSync(path, 'utf8')) as Tree

function lookup(tree: unknown, path: string[]): { found: boolean; value?: unknown } {
  let node = tree
  for (const key of path) {
    if (!isObject(node) || !(key in node)) return { found: false }
    node = node[key]
  }
  return { found: true, value: node }
}

const values = readYaml(join(chart, 'values.yaml'))
const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as Tree
const templateFiles = readdirSync(templatesDir).filter((f) => /\.(ya?ml|tpl|txt)$/.test(f))
const templates = new Map(templateFiles.map((f) => [f, readFileSync(join(templatesDir, f), 'utf8')]))
const ciFiles = readdirSync(join(chart, 'ci')).filter((f) => f.endsWith('-values.yaml'))

t.test('every .Values path used by a template exists in values.yaml', async (t) => {
  let checked = 0
  for (const [file, text] of templates) {
    for (const match of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      const path = (match[1] ?? '').slice(1).split('.')
      checked++
      t.ok(lookup(values, path).found, `${file}: .Values.${path.join('.')} is in values.yaml`)
    }
  }
  t.ok(checked > 20, `templates read values (${checked} references)`)
})

t.test('every included template is defined', async (t) => {
  const defined = new Set<string>()
  for (const text of templates.values()) {
    for (const m of text.matchAll(/define\s+"([^"]+)"/g)) defined.add(m[1] ?? '')
  }
  for (const [file, text] of templates) {
    for (const m of text.matchAll(/(?:include|template)\s+"([^"]+)"/g)) {
      const name = m[1] ?? ''
      // Zero to JupyterHub's named templates are available when the sub-chart is enabled.
      if (name.startsWith('jupyterhub.')) continue
      t.ok(defined.has(name), `${file}: "${name}" is defined`)
    }
    const opens = text.match(/\{\{/g)?.length ?? 0
    const closes = text.match(/\}\}/g)?.length ?? 0
    t.equal(opens, closes, `${file}: template actions are balanced`)
  }
})

t.test('values.yaml and each ci/*-values.yaml validate against values.schema.json', async (t) => {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true })
  const validate = ajv.compile(schema)
  const check = (name: string, data: unknown) => {
    const ok = validate(data)
    t.ok(ok, `${name} is valid`, { errors: validate.errors })
  }
  check('values.yaml', values)
  t.ok(ciFiles.length >= 2, 'there are ci values files')
  for (const file of ciFiles)
    check(`values.yaml + ci/${file}`, merge(values, readYaml(join(chart, 'ci', file))))

  // The schema must also say no: a typo and a bad server option are refused.
  t.notOk(validate(merge(values, { replicas: 2 })), 'an unknown top-level key is refused')
  t.notOk(
    validate(
      merge(values, {
        serverOptions: [{ name: 'threads', displayName: 'Threads', type: 'enum', default: 1 }],
      }),
    ),
    'an enum option without options is refused',
  )
  t.notOk(
    validate(
      merge(values, {
        serverOptions: { cpu_request: { displayName: 'CPUs', type: 'float', default: 1 } },
      }),
    ),
    'server options as a map (which Helm would merge into the defaults) are refused',
  )
  t.notOk(
    validate(merge(values, { config: { jupyterhub: { origin: 'https://hub.example.test/path' } } })),
    'origin has no path',
  )
})

t.test("the default serverOptions are the service's bundled server options", async (t) => {
  const bundled = JSON.parse(readFileSync(join(root, 'config', 'server-options.json'), 'utf8')) as unknown
  const listed = values.serverOptions as { name: string }[]
  t.same(Object.fromEntries(listed.map(({ name, ...option }) => [name, option])), bundled)
})

t.test('secrets are marked in the schema and empty by default', async (t) => {
  const secretPaths = [
    ['apiToken', 'value'],
    ['jupyterhub', 'hub', 'config', 'GitLabOAuthenticator', 'client_secret'],
    ['jupyterhub', 'hub', 'config', 'CryptKeeper', 'keys'],
  ]
  for (const path of secretPaths) {
    const node = lookup(
      schema,
      path.flatMap((k) => ['properties', k]),
    )
    t.equal((node.value as Tree | undefined)?.writeOnly, true, `${path.join('.')} is writeOnly in the schema`)
    const value = lookup(values, path).value
    t.ok(value === undefined || value === '', `${path.join('.')} has no value in values.yaml`)
  }
})

t.test('the Role grants exactly what the service needs', async (t) => {
  const text = templates.get('role.yaml') ?? ''
  const body = text
    .split('\n')
    .filter((line) => !line.trim().startsWith('{{'))
    .join('\n')
    .replace(/\{\{[^}]*\}\}/g, 'x')
  const role = parse(body) as {
    kind: string
    rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[]
  }
  t.equal(role.kind, 'Role')
  const grants = role.rules.flatMap((r) =>
    r.resources.map((res) => `${r.apiGroups.join(',')}/${res}: ${[...r.verbs].sort().join(',')}`),
  )
  // The claims' rule is there only with session volumes (the render test checks both ways).
  t.same(grants.sort(), [
    '/events: get,list,watch',
    '/persistentvolumeclaims: delete,get,list,patch',
    '/pods/log: get',
    '/pods: delete,get,list,watch',
  ])
})

t.test('Chart.yaml depends on Zero to JupyterHub, behind jupyterhub.enabled', async (t) => {
  const meta = readYaml(join(chart, 'Chart.yaml')) as { apiVersion: string; dependencies: Tree[] }
  t.equal(meta.apiVersion, 'v2')
  const dep = meta.dependencies.find((d) => d.name === 'jupyterhub')
  t.ok(dep, 'jupyterhub is a dependency')
  t.equal(dep?.repository, 'https://hub.jupyter.org/helm-chart/')
  t.equal(dep?.condition, 'jupyterhub.enabled')
  t.notOk(existsSync(join(chart, 'charts')), 'the sub-chart is not vendored')
})

t.test('the jupyterhub values register this service and mount its files', async (t) => {
  const fullname = values.fullnameOverride as string
  const hub = lookup(values, ['jupyterhub', 'hub']).value as Tree
  const config = values.config as { jupyterhub: Tree }
  const prefix = config.jupyterhub.servicePrefix as string
  const serviceName = prefix.replace(/^\/services\//, '').replace(/\/$/, '')
  const entry = lookup(hub, ['services', serviceName]).value as Tree | undefined
  t.ok(entry, `hub.services.${serviceName} exists`)
  t.equal(new URL(entry?.url as string).hostname, fullname, 'the service URL names the chart Service')
  t.equal(entry?.oauth_client_id, config.jupyterhub.clientId, 'the OAuth client ids agree')
  t.match(
    entry?.oauth_redirect_uri,
    new RegExp(`${prefix}oauth_callback$`),
    'the redirect URI is under the prefix',
  )
  t.equal(hub.allowNamedServers, true)

  const authConfig = hub.config as Tree
  t.equal(lookup(authConfig, ['JupyterHub', 'authenticator_class']).value, 'gitlab')
  t.equal(lookup(authConfig, ['Authenticator', 'enable_auth_state']).value, true)

  const roles = hub.loadRoles as Record<string, { scopes: string[]; services?: string[] }>
  const serviceRole = Object.values(roles).find((r) => r.services?.includes(serviceName))
  t.ok(serviceRole?.scopes.includes('admin:auth_state'), 'the service may read auth_state')
  t.ok(serviceRole?.scopes.includes('admin:servers'), 'the service may start and stop servers')
  t.ok(serviceRole?.scopes.includes('list:users'), 'the service may list the users with active servers')
  t.ok(
    roles.user?.scopes.includes(`access:services!service=${serviceName}`),
    'users may log in to the service',
  )

  const volumes = hub.extraVolumes as { name: string; configMap?: { name: string } }[]
  t.ok(
    volumes.some((v) => v.configMap?.name === `${fullname}-hub-files`),
    'the hub mounts the hub-files ConfigMap',
  )
  const env = hub.extraEnv as Record<string, string>
  t.equal(
    env.RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP,
    `${fullname}-hub-files`,
    'server pods mount the same ConfigMap',
  )
  const mount = (hub.extraVolumeMounts as { mountPath: string }[])[0]?.mountPath ?? ''
  const extraConfig = Object.values(hub.extraConfig as Record<string, string>).join('\n')
  t.match(extraConfig, `${mount}/spawner_config.py`, 'extraConfig loads the mounted spawner config')
  t.match(env.RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH, mount, 'the spawner reads the mounted server options')

  // The rendered ConfigMap's content is checked in chart-render.test.ts.
  const hubFiles = templates.get('hub-files-configmap.yaml') ?? ''
  t.match(hubFiles, '$.Files.Get (printf "files/%s" $file)', 'the hub-files ConfigMap reads chart/files')
  for (const file of ['spawner_config.py', 'gitlab_token.py', 'clone-repo.sh', 'autosave.sh']) {
    t.match(hubFiles, `"${file}"`, `the hub-files ConfigMap carries ${file}`)
    t.ok(existsSync(join(chart, 'files', file)), `chart/files/${file} exists`)
  }
})

t.test('the Deployment wires env, probes, secret and security settings', async (t) => {
  // The environment is one block in _helpers.tpl, shared with the session volume sweep.
  const deployment = `${templates.get('deployment.yaml') ?? ''}\n${templates.get('_helpers.tpl') ?? ''}`
  t.match(
    templates.get('deployment.yaml'),
    'include "renku-notebooks.env"',
    'the Deployment takes that block',
  )
  for (const name of [
    'JUPYTERHUB_API_URL',
    'JUPYTERHUB_API_TOKEN',
    'JUPYTERHUB_SERVICE_PREFIX',
    'JUPYTERHUB_BASE_URL',
    'JUPYTERHUB_ORIGIN',
    'JUPYTERHUB_CLIENT_ID',
    'JUPYTERHUB_OAUTH_CALLBACK_URL',
    'GITLAB_URL',
    'IMAGE_REGISTRY',
    'NOTEBOOKS_DEFAULT_IMAGE',
    'NOTEBOOKS_SERVER_OPTIONS_PATH',
    'NOTEBOOKS_MIN_ACCESS_LEVEL',
    'KUBERNETES_NAMESPACE',
    'NOTEBOOKS_UPSTREAM_TIMEOUT',
    'NOTEBOOKS_SESSION_VOLUMES',
    'NOTEBOOKS_SESSION_VOLUME_RETENTION_HOURS',
    'METRICS_PORT',
    'PORT',
    'LOG_LEVEL',
  ]) {
    t.match(deployment, `- name: ${name}\n`, `sets ${name}`)
  }
  t.match(
    deployment,
    /name: JUPYTERHUB_API_TOKEN\s+valueFrom:\s+secretKeyRef:/,
    'the token comes from a Secret',
  )
  t.match(deployment, /livenessProbe:\s+httpGet:\s+path: \{\{ include "renku-notebooks.prefix" \. \}\}health/)
  t.match(deployment, /readinessProbe:\s+httpGet:\s+path: \{\{ include "renku-notebooks.prefix" \. \}\}ready/)
  t.match(deployment, 'mountPath: /etc/renku-notebooks', 'the server options ConfigMap is mounted')
  t.match(deployment, 'value: /etc/renku-notebooks/server-options.json')
  const security = values.securityContext as Tree
  t.equal(security.readOnlyRootFilesystem, true)
  t.equal(security.allowPrivilegeEscalation, false)
  t.equal(security.runAsNonRoot, true)
  t.same(lookup(security, ['capabilities', 'drop']).value, ['ALL'])
})
