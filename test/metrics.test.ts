/**
 * Prometheus metrics (the README's "Metrics") on their own listener, after real traffic over the
 * whole stack: requests by route pattern, upstream calls by operation and outcome, launches
 * and stops, hub reads, and the process's own metrics. None of it through the service prefix.
 */

import t from 'tap'
import { startStack } from '../dev/stack.js'
import type { ServerObject } from '../schemas/servers.js'
import { build } from './helper.js'
import { untilRunning } from './support/servers.js'

const stack = await startStack()
t.teardown(() => stack.stop())
const { users, world, config } = stack
const developer = stack.as(users.developer)
const prefix = config.servicePrefix
const demo = { namespace: 'demo-group', project: 'demo-project' }

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The samples of the text exposition format (comments and blank lines left out). */
function parse(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const label of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[label[1] as string] = label[2] as string
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }
  return samples
}

async function scrape(): Promise<{ text: string; samples: Sample[] }> {
  const response = await fetch(stack.metricsUrl as string)
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`)
  const text = await response.text()
  return { text, samples: parse(text) }
}

/** The value of the one sample with exactly these labels, or undefined. */
function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort())
  return samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted)
    ?.value
}

const requests = 'renku_notebooks_http_request_duration_seconds_count'
const upstream = 'renku_notebooks_upstream_request_duration_seconds_count'

t.test('after a launch and a stop, /metrics on its own port shows the series', async (t) => {
  t.match(stack.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
  t.not(new URL(stack.metricsUrl as string).port, String(config.port), 'a port of its own')

  const launch = await developer<ServerObject>('POST', 'servers', {
    ...demo,
    commit_sha: world.commits.demo.masterFirst,
  })
  t.ok([201, 202].includes(launch.status), `launched (${launch.status})`)
  const name = launch.body.name
  const missing = await developer('POST', 'servers', { ...demo, project: 'nope', commit_sha: 'a'.repeat(40) })
  t.equal(missing.status, 404)
  await untilRunning(developer, name)
  t.equal((await developer('DELETE', `servers/${name}`)).status, 204, 'stopped')
  t.equal((await developer('DELETE', `servers/${name}`)).status, 404, 'stopping again: no such server')

  const response = await fetch(stack.metricsUrl as string)
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  await response.text()
  const { text, samples } = await scrape()

  const launchStatus = String(launch.status)
  t.equal(
    value(samples, requests, { method: 'POST', route: `${prefix}servers`, status: launchStatus }),
    1,
    'the launch request, by route pattern and status',
  )
  t.equal(value(samples, requests, { method: 'POST', route: `${prefix}servers`, status: '404' }), 1)
  t.ok(
    (value(samples, requests, { method: 'GET', route: `${prefix}servers/:server_name`, status: '200' }) ??
      0) >= 1,
    'the polling, under the route pattern',
  )
  t.notMatch(text, name, 'no raw server name anywhere')

  t.equal(
    value(samples, 'renku_notebooks_launches_total', {
      outcome: launch.status === 201 ? 'created' : 'accepted',
      code: '',
    }),
    1,
    'the launch, by outcome',
  )
  t.equal(
    value(samples, 'renku_notebooks_launches_total', { outcome: 'refused', code: 'PROJECT_NOT_FOUND' }),
    1,
    'the refused launch, by code',
  )
  t.equal(value(samples, 'renku_notebooks_stops_total', { outcome: 'stopped', code: '' }), 1)
  t.equal(value(samples, 'renku_notebooks_stops_total', { outcome: 'refused', code: 'SERVER_NOT_FOUND' }), 1)

  const call = (labels: Record<string, string>) => value(samples, upstream, labels) ?? 0
  t.equal(
    call({ upstream: 'jupyterhub', operation: 'POST /users/{name}/servers/{server_name}', outcome: 'ok' }),
    1,
    'the hub was asked to start the server once',
  )
  t.ok(call({ upstream: 'jupyterhub', operation: 'GET /users/{name}', outcome: 'ok' }) >= 1, 'hub user reads')
  t.ok(call({ upstream: 'jupyterhub', operation: 'GET /user', outcome: 'ok' }) >= 1, 'token checks')
  t.equal(
    call({ upstream: 'jupyterhub', operation: 'DELETE /users/{name}/servers/{server_name}', outcome: 'ok' }),
    1,
  )
  t.equal(
    call({ upstream: 'jupyterhub', operation: 'DELETE /users/{name}/servers/{server_name}', outcome: '4xx' }),
    1,
    'the second stop: the hub answered 404',
  )
  t.ok(
    call({ upstream: 'gitlab', operation: 'GET /projects/{id}', outcome: 'ok' }) >= 1,
    'GitLab project read',
  )
  t.equal(
    call({ upstream: 'gitlab', operation: 'GET /projects/{id}', outcome: '4xx' }),
    1,
    'the missing project: GitLab answered 404',
  )
  t.ok(
    call({ upstream: 'gitlab', operation: 'GET /projects/{id}/repository/commits/{sha}', outcome: 'ok' }) >=
      1,
  )
  t.ok(
    samples.some((s) => s.name === 'renku_notebooks_upstream_request_duration_seconds_bucket'),
    'with durations',
  )
  t.notMatch(text, world.users.developer.token, 'no token in any label')
  t.notMatch(text, 'demo-project', 'no project path in any label')

  const reads = (source: string) => value(samples, 'renku_notebooks_hub_reads_total', { source }) ?? 0
  t.ok(reads('state') >= 1, 'reads answered from the copy of the hub state')
  for (let i = 0; i < 5; i++) await developer('GET', 'servers')
  const after = await scrape()
  t.ok(
    (value(after.samples, 'renku_notebooks_hub_reads_total', { source: 'state' }) ?? 0) >= reads('state') + 5,
    'five more reads: five more answered from the copy',
  )
  t.equal(value(samples, 'renku_notebooks_progress_streams_open', {}), 0)
  for (const outcome of ['restored', 'deleted']) {
    t.equal(value(samples, 'renku_notebooks_autosaves_total', { outcome }), 0, `autosaves ${outcome}: 0`)
  }
  t.ok(value(samples, 'process_cpu_user_seconds_total', {}) !== undefined, "the process's own metrics")
  t.ok(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds'))
})

t.test('label values stay bounded: many names, one route; unknown URLs, one label', async (t) => {
  for (let i = 0; i < 25; i++) {
    t.equal((await developer('GET', `servers/no-such-server-${i}`)).status, 404)
    t.equal((await developer('GET', `no-such-route-${i}`)).status, 404)
  }
  const { text, samples } = await scrape()
  t.equal(
    value(samples, requests, { method: 'GET', route: `${prefix}servers/:server_name`, status: '404' }),
    25,
    'twenty-five names, one series',
  )
  t.equal(value(samples, requests, { method: 'GET', route: 'unmatched', status: '404' }), 25)
  t.notMatch(text, 'no-such-', 'no raw path anywhere')
  const routes = new Set(samples.filter((s) => s.name === requests).map((s) => s.labels.route))
  t.ok(routes.size < 10, `few route label values (${[...routes].join(', ')})`)
})

t.test('metrics are not served through the service, and only /metrics on their port', async (t) => {
  const origin = new URL(stack.serviceUrl).origin
  for (const url of [`${stack.serviceUrl}metrics`, `${origin}/metrics`]) {
    const response = await fetch(url)
    t.equal(response.status, 404, `${url}: 404`)
    t.equal(((await response.json()) as { code: string }).code, 'ROUTE_NOT_FOUND')
  }
  const other = await fetch(new URL('/other', stack.metricsUrl as string))
  t.equal(other.status, 404)
  await other.text()
})

t.test('METRICS_PORT=0: no listener; each app has its own registry', async (t) => {
  const app = await build(t, {
    JUPYTERHUB_API_URL: 'http://127.0.0.1:1/hub/api',
    JUPYTERHUB_API_TOKEN: 'token',
    METRICS_PORT: '0',
  })
  t.equal(await app.listenForMetrics(), null, 'off')
  const ready = await app.inject({ url: `${prefix}ready` })
  t.equal(ready.statusCode, 503)
  const own = parse(await app.metrics.registry.metrics())
  t.equal(
    value(own, upstream, { upstream: 'jupyterhub', operation: 'GET /', outcome: 'unreachable' }),
    1,
    'a hub that cannot be reached',
  )
  t.equal(value(own, requests, { method: 'GET', route: `${prefix}ready`, status: '503' }), 1)
  const { samples } = await scrape()
  t.equal(
    value(samples, requests, { method: 'GET', route: `${prefix}ready`, status: '503' }),
    undefined,
    "not in the other app's metrics",
  )
})
