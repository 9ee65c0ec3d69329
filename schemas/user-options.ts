/**
 * What a launch sends the hub's spawner as `user_options`: the one contract between the
 * service and the hub. The hub checks it with `chart/files/renku_options.py` (the chart's hub
 * and the local hub alike); `test/user-options.test.ts` runs that parser on this shape.
 */
import { type Static, Type } from '@sinclair/typebox'

export const UserOptionsSchema = Type.Object(
  {
    namespace: Type.String({ description: 'GitLab namespace path of the project.' }),
    project: Type.String({ description: 'GitLab project path (its last part).' }),
    branch: Type.String(),
    commit_sha: Type.String({ pattern: '^[0-9a-f]{40}$', description: 'The full, resolved commit.' }),
    project_id: Type.Integer({ minimum: 0 }),
    notebook: Type.Union([Type.String(), Type.Null()], { description: 'Path to open, inside the project.' }),
    image: Type.String(),
    default_image_used: Type.Boolean(),
    repository: Type.String({ description: "The project's http_url_to_repo, without credentials." }),
    server_options: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
    autosave: Type.Optional(
      Type.String({ description: 'The autosave branch to restore, renku/autosave/...' }),
    ),
    volume: Type.Optional(
      Type.Union([Type.Literal('new'), Type.Literal('resumed')], {
        description:
          'With session volumes: whether the server starts on a new volume or resumes its kept one.',
      }),
    ),
  },
  { additionalProperties: false },
)

export type UserOptions = Static<typeof UserOptionsSchema>
