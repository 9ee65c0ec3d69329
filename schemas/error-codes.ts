/**
 * Every error code the service answers (the README's "Errors"), with its HTTP status and what it
 * means. The one list: `ApiError` takes its code type from it (a typo fails the typecheck),
 * the OpenAPI document's `Error.code` enum and each operation's error responses are built
 * from it (`errors(...)` in schemas/common.ts), and test/openapi.test.ts checks that every
 * code here is answered somewhere in the sources and documented by an operation.
 *
 * A new code: add it here, throw `new ApiError(<its status>, '<CODE>', …)`, and list it in
 * the `errors(...)` of each route that can answer it.
 */
export const errorCodes = {
  // Before any route runs, or on any route.
  ROUTE_NOT_FOUND: { status: 404, description: 'There is no such route.' },
  BAD_URL: { status: 400, description: 'The URL is not validly percent-encoded.' },
  BAD_REQUEST: { status: 400, description: 'The request is malformed (e.g. its Content-Length is wrong).' },
  REQUEST_TIMEOUT: { status: 408, description: 'The request did not arrive in time.' },
  HEADERS_TOO_LARGE: { status: 431, description: 'The request headers are too large.' },
  INTERNAL_ERROR: { status: 500, description: 'An unexpected error on the service’s side; it is logged.' },

  // Request bodies and validation.
  INVALID_JSON: { status: 400, description: 'The body is not valid JSON (or holds a `__proto__` key).' },
  EMPTY_BODY: { status: 400, description: 'The request says it has a JSON body but it is empty.' },
  BODY_TOO_LARGE: { status: 413, description: 'The body is larger than 1 MiB.' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    description: 'A body must be JSON (`Content-Type: application/json`).',
  },
  VALIDATION_ERROR: {
    status: 422,
    description: 'A field is invalid; `messages.json`, `messages.query` or `messages.params` name it.',
  },
  INVALID_SERVER_OPTIONS: {
    status: 422,
    description: 'A server option is unknown or has a value it does not allow; `messages.json` names it.',
  },

  // Who the caller is.
  NOT_AUTHENTICATED: { status: 401, description: 'No valid JupyterHub token or login session.' },
  USERS_ONLY: { status: 403, description: 'The token belongs to a service, not a JupyterHub user.' },
  GITLAB_TOKEN_MISSING: {
    status: 401,
    description: 'JupyterHub holds no GitLab login for the caller: log in again.',
  },
  GITLAB_TOKEN_REJECTED: {
    status: 401,
    description: 'GitLab refuses the caller’s GitLab login: log in again.',
  },
  GITLAB_SCOPE_MISSING: {
    status: 403,
    description:
      'The caller’s GitLab login lacks a scope: `read_api` (reading projects), `write_repository` or `api` ' +
      '(a launch: saving the work when the server stops), `api` (deleting an autosave).',
  },
  ACCESS_DENIED: {
    status: 403,
    description: 'The caller’s GitLab access level is below the one needed to launch (Developer by default).',
  },
  USER_NOT_FOUND: { status: 404, description: 'JupyterHub does not know the caller.' },

  // Login through the hub.
  INVALID_NEXT: { status: 400, description: '`next` is not a path on this service.' },
  OAUTH_CALLBACK_INVALID: { status: 400, description: 'The login callback lacks its code or state.' },
  OAUTH_STATE_INVALID: {
    status: 400,
    description: 'The state does not match a login this browser started (used already or expired).',
  },
  OAUTH_CODE_INVALID: { status: 400, description: 'JupyterHub did not accept the login code.' },
  OAUTH_DENIED: { status: 403, description: 'JupyterHub refused the login.' },

  // Launching.
  PROJECT_NOT_FOUND: {
    status: 404,
    description: 'No such GitLab project, or the caller cannot see it.',
  },
  BRANCH_NOT_FOUND: { status: 404, description: 'The project has no such branch.' },
  COMMIT_NOT_FOUND: { status: 404, description: 'The project has no such commit.' },
  IMAGE_NOT_FOUND: {
    status: 404,
    description: 'The explicit image does not exist, or the caller may not read it.',
  },
  SERVER_LIMIT_REACHED: {
    status: 409,
    description: 'The caller has the hub’s maximum number of servers: stop one first.',
  },
  TOO_MANY_SPAWNS: {
    status: 429,
    description: 'JupyterHub is starting too many servers: retry after `Retry-After` seconds.',
  },

  // Servers.
  SERVER_NOT_FOUND: { status: 404, description: 'The caller has no server of that name.' },
  SERVER_BUSY: {
    status: 409,
    description:
      'The server is still starting or stopping and cannot be stopped or launched yet: retry. For a kept ' +
      'volume: its server is running, starting or stopping; stop it first.',
  },
  LOGS_UNAVAILABLE: { status: 503, description: 'No log source is configured.' },

  // Autosaves.
  AUTOSAVE_NOT_FOUND: {
    status: 404,
    description: 'The caller has no autosave of that name (another user’s is not found either).',
  },

  // Upstreams (the message names JupyterHub, GitLab, Kubernetes, the image registry or the log files).
  UPSTREAM_BAD_RESPONSE: {
    status: 502,
    description: 'An upstream, named in the message, gave an unexpected answer.',
  },
  UPSTREAM_UNAVAILABLE: { status: 503, description: 'An upstream, named in the message, cannot be reached.' },
  UPSTREAM_TIMEOUT: {
    status: 504,
    description: 'An upstream, named in the message, did not answer in time.',
  },
} as const satisfies Record<string, { status: number; description: string }>

export type ErrorCode = keyof typeof errorCodes

/** Every code, in the registry's order. */
export const allErrorCodes = Object.keys(errorCodes) as ErrorCode[]

/** Codes no operation answers: the router's and the HTTP parser's, and the unexpected. */
export const codesOutsideOperations: readonly ErrorCode[] = [
  'ROUTE_NOT_FOUND',
  'BAD_URL',
  'REQUEST_TIMEOUT',
  'HEADERS_TOO_LARGE',
  'INTERNAL_ERROR',
]
