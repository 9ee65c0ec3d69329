/**
 * Swagger UI in a real browser (Debian's chromium through playwright-core), against the
 * service behind a real hub's proxy: log in through the hub's OAuth flow, then list and
 * launch servers with "Try it out", and follow a launch's progress with an EventSource,
 * authenticated by the session cookie alone.
 */
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { chromium, type Locator, type Page } from 'playwright-core'
import t from 'tap'
import { eventually, startStack } from '../../dev/stack.js'

const OUTPUT = path.resolve(import.meta.dirname, '..', '..', 'test-output')
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
]

/** Expands an operation, presses "Try it out" (once), optionally fills the body, and executes it. */
async function execute(page: Page, operation: string, body?: string): Promise<Locator> {
  const block = page.locator(`#${operation}`)
  if (!(await block.locator('.opblock-body').isVisible()))
    await block.locator('.opblock-summary').first().click()
  const tryOut = block.locator('button.try-out__btn', { hasText: 'Try it out' })
  if (await tryOut.isVisible()) await tryOut.click()
  if (body !== undefined) await block.locator('textarea.body-param__text').fill(body)
  // Drop an earlier answer, so the one waited for below is this execution's.
  const clear = block.locator('button.btn-clear')
  if (await clear.isVisible()) await clear.click()
  await block.locator('button.execute').click()
  await block.locator('.live-responses-table tbody tr.response').first().waitFor({ timeout: 60_000 })
  return block
}

/** The status code and the body Swagger UI shows for the operation's last execution. */
async function answerOf(block: Locator): Promise<{ status: string; body: string }> {
  const row = block.locator('.live-responses-table tbody tr.response').first()
  const status = (await row.locator('td.response-col_status').textContent()) ?? ''
  const body = (await row.locator('.response-col_description pre').first().textContent()) ?? ''
  return { status: /\d{3}/.exec(status)?.[0] ?? status.trim(), body }
}

t.test('Swagger UI: log in through the hub, list and launch servers', async (t) => {
  const stack = await startStack()
  t.teardown(() => stack.stop())
  const { hub, world, users } = stack
  const service = `${hub.publicUrl}${stack.config.servicePrefix}`

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
  t.teardown(() => browser.close())
  const context = await browser.newContext({ viewport: { width: 1280, height: 1600 } })
  const page = await context.newPage()
  // Generous: the machine may be busy with other hubs and browsers.
  page.setDefaultTimeout(60_000)

  await t.test('a page of the service sends the browser through the hub login and back', async (t) => {
    await page.goto(`${service}user`)
    t.match(page.url(), /\/hub\/login/, 'at the hub login form')
    await page.fill('input[name="username"]', 'developer')
    await page.fill('input[name="password"]', 'password')
    await Promise.all([
      page.waitForURL(`${service}user`),
      page.click('input[type="submit"], button[type="submit"]'),
    ])
    t.match(await page.textContent('body'), /"name":\s*"developer"/, 'back on the page, as developer')
    const cookie = (await context.cookies(service)).find((c) => c.name === 'notebooks-session')
    t.ok(cookie, 'the session cookie is set')
    t.equal(cookie?.httpOnly, true, 'HttpOnly')
    t.equal(cookie?.sameSite, 'Lax', 'SameSite=Lax')
    t.equal(cookie?.path, stack.config.servicePrefix)
    t.equal(
      String(await page.evaluate('document.cookie')).includes('notebooks-session'),
      false,
      'not readable by scripts',
    )
  })

  await t.test(
    'EventSource: the progress of a launch arrives step by step, by the login cookie',
    async (t) => {
      const watched = 'watched-in-browser'
      // Started through the hub with the spawner's delay, so the browser sees the steps arrive.
      void hub.admin('POST', `/users/developer/servers/${watched}`, {
        namespace: world.projects.demo.namespace.fullPath,
        project: world.projects.demo.path,
        branch: 'master',
        commit_sha: world.commits.demo.masterFirst,
        project_id: world.projects.demo.id,
        repository: `${stack.gitlab.url}/${world.projects.demo.namespace.fullPath}/${world.projects.demo.path}.git`,
        jhub_test_delay: 4,
      })
      const call = stack.as(users.developer)
      await eventually(async () =>
        (await call('GET', `servers/${watched}`)).status === 200 ? true : undefined,
      )
      type Received = { id: string; at: number; step: string; progress: number; url?: string }
      const received = await page.evaluate(
        (url) =>
          new Promise<Received[]>((resolve, reject) => {
            // No headers: the login cookie alone authenticates the stream.
            const source = new EventSource(url)
            const events: Received[] = []
            source.addEventListener('progress', (message) => {
              const data = JSON.parse((message as MessageEvent).data)
              events.push({ id: (message as MessageEvent).lastEventId, at: Date.now(), ...data })
              if (data.step === 'ready' || data.step === 'failed') {
                source.close()
                resolve(events)
              }
            })
            source.onerror = () => {
              if (source.readyState === EventSource.CLOSED) reject(new Error('the stream was refused'))
            }
          }),
        `${service}servers/${watched}/progress`,
      )
      const steps = received.map((event) => event.step)
      t.same(steps, ['requested', 'cloning', 'starting', 'ready'], `steps: ${steps.join(', ')}`)
      t.ok(
        received.every((event) => /^\d+-\d$/.test(event.id)),
        'each event carries its id (for Last-Event-ID on reconnecting)',
      )
      t.ok((received.at(-1)?.at ?? 0) - (received[0]?.at ?? 0) > 1000, 'they arrived over time, not at once')
      t.equal(received.at(-1)?.url, `${hub.publicUrl}/user/developer/${watched}/`, 'ready with the url')
    },
  )

  let serverName = ''
  await t.test('Try it out: GET servers, POST servers, then GET servers lists it', async (t) => {
    await page.goto(`${service}docs/`)
    await page.locator('#operations-servers-listServers').waitFor()

    let block = await execute(page, 'operations-servers-listServers')
    t.equal((await answerOf(block)).status, '200', 'GET servers: 200')

    const launch = JSON.stringify(
      {
        namespace: world.projects.demo.namespace.fullPath,
        project: world.projects.demo.path,
        commit_sha: world.commits.demo.masterFirst,
      },
      null,
      2,
    )
    block = await execute(page, 'operations-servers-launchServer', launch)
    const launched = await answerOf(block)
    t.match(launched.status, /^20[12]$/, `POST servers: ${launched.status}`)
    serverName = (JSON.parse(launched.body) as { name: string }).name
    t.match(serverName, /^demo-project-[0-9a-f]{8}$/)

    block = await execute(page, 'operations-servers-listServers')
    const listed = await answerOf(block)
    t.equal(listed.status, '200')
    t.ok(serverName in (JSON.parse(listed.body) as { servers: Record<string, unknown> }).servers, 'listed')

    await mkdir(OUTPUT, { recursive: true })
    // The launch's answer (201/202 with the server) and, below it, the list that shows it.
    await page
      .locator('#operations-servers-launchServer .live-responses-table')
      .first()
      .scrollIntoViewIfNeeded()
    await page.screenshot({ path: path.join(OUTPUT, 'swagger-ui.png') })
    await page
      .locator('#operations-servers-listServers .live-responses-table')
      .first()
      .scrollIntoViewIfNeeded()
    await page.screenshot({ path: path.join(OUTPUT, 'swagger-ui-list.png') })
  })

  // Stop what the browser launched, through the API with the user's token.
  const call = stack.as(users.developer)
  const { body } = await call<{ servers: Record<string, unknown> }>('GET', 'servers')
  for (const name of Object.keys(body.servers ?? {})) {
    await eventually(
      async () => {
        const res = await call('DELETE', `servers/${name}`)
        return [202, 204, 404].includes(res.status) ? true : undefined
      },
      60_000,
      `stopping ${name}`,
    )
  }
  await eventually(
    async () => {
      const res = await call<{ servers: Record<string, unknown> }>('GET', 'servers')
      return Object.keys(res.body.servers ?? {}).length === 0 ? true : undefined
    },
    60_000,
    'no servers left',
  )
  t.pass('cleaned up')
})
