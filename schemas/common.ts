import { type Static, type TSchema, Type } from '@sinclair/typebox'

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
    code: Type.String({
      description: 'Stable machine code, UPPER_SNAKE_CASE.',
      examples: ['SERVER_NOT_FOUND'],
    }),
  },
  { $id: 'Error', description: 'Every error the service answers with.' },
)
export type ErrorResponse = Static<typeof ErrorSchema>

export const ErrorRef = Type.Ref(ErrorSchema)

/** Error responses for the given status codes, each with its meaning. */
export function errors(codes: Record<number, string>): Record<number, TSchema> {
  return Object.fromEntries(
    Object.entries(codes).map(([status, description]) => [status, { ...ErrorRef, description }]),
  )
}

/** The failures every authenticated route may answer with. */
export const authErrors = {
  401: 'No valid JupyterHub token or session.',
  503: 'An upstream (named in the message) cannot be reached.',
  504: 'An upstream (named in the message) did not answer in time.',
}

export const upstreamErrors = {
  502: 'An upstream (named in the message) gave an unexpected answer.',
  ...authErrors,
}

/** Authenticated routes accept a JupyterHub token or the login session cookie. */
export const userSecurity: Record<string, string[]>[] = [{ hubToken: [] }, { session: [] }]
