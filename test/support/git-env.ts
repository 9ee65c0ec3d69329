/** Environments for the git a test runs against the GitLab stand-in. */

/** git that reads no system or user configuration, never prompts, and commits as one fixed author. */
export const isolatedGitEnv: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_TERMINAL_PROMPT: '0',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 'T',
  GIT_AUTHOR_EMAIL: 't@example.com',
  GIT_COMMITTER_NAME: 'T',
  GIT_COMMITTER_EMAIL: 't@example.com',
}

/** The `Authorization` value GitLab accepts for a token over HTTP Basic. */
export const basicAuth = (token: string) => `Basic ${Buffer.from(`oauth2:${token}`).toString('base64')}`

/** The same git, sending the token as an `http.extraHeader` (git-lfs reads it from there too). */
export const gitEnvWithToken = (token: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  ...isolatedGitEnv,
  GIT_CONFIG_COUNT: '1',
  GIT_CONFIG_KEY_0: 'http.extraHeader',
  GIT_CONFIG_VALUE_0: `Authorization: ${basicAuth(token)}`,
  ...extra,
})
