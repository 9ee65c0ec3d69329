import { type Static, Type } from '@sinclair/typebox'

export const CommitSha = Type.String({
  pattern: '^[0-9a-fA-F]{7,40}$',
  description: '7 to 40 hexadecimal characters; resolved to the full sha through GitLab.',
})

export const LaunchRequestSchema = Type.Object(
  {
    namespace: Type.String({
      minLength: 1,
      maxLength: 255,
      description: 'GitLab namespace (group path, may contain `/`).',
    }),
    project: Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[A-Za-z0-9_.][A-Za-z0-9_.-]*$',
      description: 'Project path.',
    }),
    commit_sha: CommitSha,
    branch: Type.Optional(
      Type.String({ minLength: 1, maxLength: 255, description: "Default: the project's default branch." }),
    ),
    notebook: Type.Optional(Type.String({ maxLength: 1024, description: 'Path of a notebook to open.' })),
    image: Type.Optional(
      Type.String({ minLength: 1, maxLength: 512, description: 'An explicit image; it must exist.' }),
    ),
    serverOptions: Type.Optional(
      Type.Record(Type.String(), Type.Unknown(), {
        description: 'Values for the options of `GET server_options`; missing keys take their defaults.',
      }),
    ),
  },
  {
    $id: 'LaunchRequest',
    additionalProperties: false,
    examples: [
      {
        namespace: 'my-group',
        project: 'my-project',
        commit_sha: '0123abc',
        serverOptions: { cpu_request: 1 },
      },
    ],
  },
)
export type LaunchRequest = Static<typeof LaunchRequestSchema>

export const ServerSchema = Type.Object(
  {
    name: Type.String(),
    url: Type.String({ description: 'Where the notebook server answers.' }),
    started: Type.Union([Type.String(), Type.Null()]),
    image: Type.Union([Type.String(), Type.Null()]),
    annotations: Type.Record(Type.String(), Type.String()),
    resources: Type.Object({
      cpu: Type.Optional(Type.String()),
      memory: Type.Optional(Type.String()),
      storage: Type.Optional(Type.String()),
      gpu: Type.Optional(Type.String()),
    }),
    status: Type.Object({
      state: Type.Union(
        [Type.Literal('starting'), Type.Literal('running'), Type.Literal('stopping'), Type.Literal('failed')],
        {
          description:
            '`failed`: not running, and not starting or stopping: a failed spawn, a failed pod, or a ' +
            'server stopped at the hub without being removed (the idle culler with ' +
            '`removeNamedServers: false`, an admin). `reason` tells which; launching it again starts it ' +
            'again (restoring its autosave, if any), stopping it removes it.',
        },
      ),
      ready: Type.Boolean(),
      phase: Type.Optional(Type.String({ description: "The pod's phase, where a pod is known." })),
      step: Type.Optional(
        Type.String({ description: "The pod's first unmet condition, where a pod is known." }),
      ),
      message: Type.Optional(Type.String({ description: 'What the state means for this server, in words.' })),
      reason: Type.Optional(
        Type.String({
          description:
            'Why, as a word a client can test: from the pod (Kubernetes reasons such as `Unschedulable`, ' +
            '`ErrImagePull`, `Terminating`), or, for a server that is not running and has no pod, ' +
            '`SpawnFailed` (its last start failed; `message` says why when the hub still knows) or ' +
            '`Stopped` (it did start and was stopped at the hub, e.g. after being idle). Absent while ' +
            'the service has not yet learnt which (moments after the stop).',
        }),
      ),
    }),
    state: Type.Record(Type.String(), Type.Unknown(), {
      description: "The spawner's state, e.g. `pod_name`.",
    }),
  },
  { $id: 'Server', description: 'A notebook server of the caller.' },
)
export type ServerObject = Static<typeof ServerSchema>

export const ServerListSchema = Type.Object(
  { servers: Type.Record(Type.String(), Type.Ref(ServerSchema)) },
  { $id: 'ServerList' },
)

export const ServerFilterSchema = Type.Object(
  {
    namespace: Type.Optional(Type.String()),
    project: Type.Optional(Type.String()),
    branch: Type.Optional(Type.String()),
    commit_sha: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
)
export type ServerFilter = Static<typeof ServerFilterSchema>

export const ServerNameParams = Type.Object({
  // Not limited here: a name no server can have is a 404 (SERVER_NOT_FOUND), not a 422 or a 414.
  server_name: Type.String({ description: 'The server’s name (at most 63 characters).' }),
})

export const DeleteQuerySchema = Type.Object(
  {
    force: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Also delete the pod in Kubernetes when the hub cannot stop it.',
      }),
    ),
  },
  { additionalProperties: false },
)

export const LogsQuerySchema = Type.Object(
  {
    max_lines: Type.Integer({ minimum: 0, default: 250, description: 'Last lines to return; 0 means all.' }),
  },
  { additionalProperties: false },
)

export const LogLinesSchema = Type.Array(Type.String(), { description: 'Log lines, oldest first.' })
