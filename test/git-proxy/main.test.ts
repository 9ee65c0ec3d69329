import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const execFileAsync = promisify(execFile)
const MAIN = path.resolve(import.meta.dirname, '..', '..', 'git-proxy', 'main.ts')

const start = (env: Record<string, string>) =>
  execFileAsync(process.execPath, ['--import', 'tsx', MAIN], {
    env: { PATH: process.env.PATH ?? '', ...env },
  }).then(
    () => ({ code: 0, stderr: '' }),
    (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
  )

t.test('a bad configuration is one line naming the variable, and exit 1', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ GIT_ACCESS_TOKEN_FILE: '/tmp/x' }, /GIT_PROXY_REPOSITORY_URL is required/],
    [{ GIT_PROXY_REPOSITORY_URL: 'http://gitlab/ns/p.git' }, /GIT_ACCESS_TOKEN_FILE is required/],
    [
      { GIT_PROXY_REPOSITORY_URL: 'https://gitlab/ns/p.git', GIT_ACCESS_TOKEN_FILE: '/tmp/x' },
      /GIT_PROXY_CA_FILE is required/,
    ],
    [{ GIT_PROXY_REPOSITORY_URL: 'gitlab/ns/p.git', GIT_ACCESS_TOKEN_FILE: '/tmp/x' }, /is not a URL/],
    [
      {
        GIT_PROXY_REPOSITORY_URL: 'http://gitlab/ns/p.git',
        GIT_ACCESS_TOKEN_FILE: '/tmp/x',
        GIT_PROXY_PORT: 'x',
      },
      /GIT_PROXY_PORT must be a port/,
    ],
    [
      {
        GIT_PROXY_REPOSITORY_URL: 'http://gitlab/ns/p.git',
        GIT_ACCESS_TOKEN_FILE: '/tmp/x',
        GIT_PROXY_TIMEOUT_SECONDS: 'soon',
      },
      /GIT_PROXY_TIMEOUT_SECONDS must be a number/,
    ],
  ]
  for (const [env, message] of cases) {
    const { code, stderr } = await start(env)
    t.equal(code, 1, `exit 1 for ${message}`)
    t.match(stderr, message)
    t.equal(stderr.trim().split('\n').length, 1, 'one line')
  }
})
