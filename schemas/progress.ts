import { type Static, Type } from '@sinclair/typebox'

/** The steps of a launch, in the order they are sent (the README's "Following a start"). */
export const PROGRESS_STEPS = [
  'requested',
  'scheduled',
  'pulling',
  'cloning',
  'starting',
  'ready',
  'failed',
] as const
export type ProgressStep = (typeof PROGRESS_STEPS)[number]

export const ProgressEventSchema = Type.Object(
  {
    step: Type.Union(
      PROGRESS_STEPS.map((step) => Type.Literal(step)),
      {
        description:
          'In this order; a step may be skipped, none is sent twice. `ready` or `failed` is the last event.',
      },
    ),
    progress: Type.Integer({ minimum: 0, maximum: 100, description: 'Never decreases within a stream.' }),
    message: Type.String({ description: 'What is happening, in one sentence a person understands.' }),
    ready: Type.Optional(Type.Literal(true, { description: 'On the `ready` event.' })),
    url: Type.Optional(Type.String({ description: 'On the `ready` event: where the server answers.' })),
    failed: Type.Optional(Type.Literal(true, { description: 'On the `failed` event; `message` says why.' })),
    image: Type.Optional(Type.String({ description: 'On the `pulling` event: the image being pulled.' })),
    autosave: Type.Optional(
      Type.String({ description: 'On the `cloning` event: the autosave branch being restored, if any.' }),
    ),
  },
  {
    $id: 'ProgressEvent',
    description:
      "The `data` of one Server-Sent Event of a launch's progress stream (`event: progress`, `id: <started-ms>-<step number>`).",
    examples: [
      { step: 'pulling', progress: 40, message: 'The image renku/singleuser:0.4.3 is being pulled.' },
    ],
  },
)
export type ProgressEvent = Static<typeof ProgressEventSchema>

export const ProgressHeadersSchema = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({
      description:
        'The id of the last event received: the stream resumes after it (a browser sends it itself).',
    }),
  ),
})
