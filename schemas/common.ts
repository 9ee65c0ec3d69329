import { type Static, type TSchema, Type } from '@sinclair/typebox'
import { allErrorCodes, type ErrorCode, errorCodes } from './error-codes.js'

const FieldErrors = Type.Record(Type.String(), Type.Array(Type.String()), {
  description: 'Field name to the reasons it was refused.',
})

export const ErrorSchema = Type.Object(
  {
    messages: Type.Object({
      error: Type.String({ description: 'One sentence a person understands.' }),
      json: Type.Optional(FieldErrors),
      query: Type.Optional(FieldErrors),
      params: Type.Optional(FieldErrors),
    }),
    code: Type.Unsafe<ErrorCode>({
      type: 'string',
      enum: allErrorCodes,
      description:
        'Stable machine code. Each operation lists the codes it answers with; `ROUTE_NOT_FOUND`, `BAD_URL`, ' +
        '`REQUEST_TIMEOUT`, `HEADERS_TOO_LARGE` and `INTERNAL_ERROR` come before or outside any operation.',
    }),
  },
  { $id: 'Error', description: 'Every error the service answers with.' },
)
export type ErrorResponse = Static<typeof ErrorSchema>

export const ErrorRef = Type.Ref(ErrorSchema)

/**
 * The error responses of an operation that answers with these codes: one per status, each an
 * `Error` whose `code` is one of that status's codes (so a generated client can switch on it),
 * described by the codes' meanings.
 */
export function errors(...codes: ErrorCode[]): Record<number, TSchema> {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of new Set(codes)) {
    const { status } = errorCodes[code]
    byStatus.set(status, [...(byStatus.get(status) ?? []), code])
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      Type.Unsafe<ErrorResponse>({
        description: list.map((code) => `\`${code}\`: ${errorCodes[code].description}`).join('\n\n'),
        allOf: [
          ErrorRef,
          { type: 'object', required: ['code'], properties: { code: { type: 'string', enum: list } } },
        ],
      }),
    ]),
  )
}

/** What any JupyterHub-authenticated operation may answer: the caller's check asks the hub. */
export const authenticated: ErrorCode[] = [
  'NOT_AUTHENTICATED',
  'USERS_ONLY',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_TIMEOUT',
]

/** What an operation answers when a body is sent: JSON only, within the size limit. */
export const withBody: ErrorCode[] = [
  'INVALID_JSON',
  'EMPTY_BODY',
  'BAD_REQUEST',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'VALIDATION_ERROR',
]

/** Authenticated routes accept a JupyterHub token or the login session cookie. */
export const userSecurity: Record<string, string[]>[] = [{ hubToken: [] }, { session: [] }]
