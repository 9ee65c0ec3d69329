import { type Static, Type } from '@sinclair/typebox'

const OptionValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()])

export const ServerOptionSchema = Type.Object(
  {
    displayName: Type.String(),
    type: Type.Union([
      Type.Literal('enum'),
      Type.Literal('boolean'),
      Type.Literal('int'),
      Type.Literal('float'),
    ]),
    default: OptionValue,
    options: Type.Optional(Type.Array(OptionValue, { description: 'Allowed values of an `enum` option.' })),
    order: Type.Optional(Type.Number()),
    allow_any_value: Type.Optional(Type.Boolean()),
    value_range: Type.Optional(
      Type.Object({
        type: Type.Union([Type.Literal('bytes'), Type.Literal('number')]),
        min: Type.Union([Type.String(), Type.Number()]),
        max: Type.Union([Type.String(), Type.Number()]),
      }),
    ),
  },
  { $id: 'ServerOption', description: 'One option a user may choose when launching a server.' },
)
export type ServerOption = Static<typeof ServerOptionSchema>

export const ServerOptionsSchema = Type.Record(Type.String(), Type.Ref(ServerOptionSchema), {
  $id: 'ServerOptions',
  description: 'The server options a launch accepts, keyed by option name.',
})
export type ServerOptions = Record<string, ServerOption>

/** Values chosen for a launch: option name to value. */
export type ServerOptionValues = Record<string, string | number | boolean>
