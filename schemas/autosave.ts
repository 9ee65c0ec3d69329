import { type Static, Type } from '@sinclair/typebox'

export const AutosaveSchema = Type.Object(
  {
    name: Type.String({
      description:
        'The autosave branch, `renku/autosave/<user>/<branch>/<commit_sha[:7]>/<head[:7]>`; for a kept volume ' +
        '(`pvs: true`), the name of its stopped server.',
      examples: ['renku/autosave/alice/master/0123abc/4567def', 'my-project-1a2b3c4d'],
    }),
    branch: Type.String({ description: 'The branch of the launch whose work it saved.' }),
    commit: Type.String({ description: 'The commit of that launch, its first 7 characters.' }),
    date: Type.String({
      description:
        'When the work was saved (the autosave commit), or, for a kept volume, when its server stopped; ISO 8601.',
    }),
    pvs: Type.Boolean({
      description:
        'True for a kept volume: the whole working directory of a stopped server, which its next launch resumes; ' +
        'false for an autosave branch in GitLab.',
    }),
  },
  {
    $id: 'Autosave',
    description:
      'Work of a stopped server: unsaved work saved to GitLab as a branch, or (with session volumes) the ' +
      'volume its working directory was kept on.',
  },
)

export const AutosaveListSchema = Type.Object(
  {
    pvsSupport: Type.Boolean({
      description:
        "Whether servers keep their working directory on a volume of their own (the operator's choice).",
    }),
    autosaves: Type.Array(Type.Ref(AutosaveSchema), {
      description: "The caller's autosaves and kept volumes, newest first.",
    }),
  },
  { $id: 'AutosaveList' },
)
export type AutosaveList = Static<typeof AutosaveListSchema>

const namespace = Type.String({
  minLength: 1,
  description:
    'GitLab namespace (group path). It may contain `/`: percent-encoded as `%2F` (as generated clients ' +
    'send it) or raw, e.g. `science/lab/my-project/autosave`.',
})
const project = Type.String({ minLength: 1, description: 'Project path.' })

export const AutosaveProjectParams = Type.Object({ namespace, project })

export const AutosaveParams = Type.Object({
  namespace,
  project,
  name: Type.String({
    minLength: 1,
    description:
      'The autosave branch, its slashes percent-encoded as `%2F` or raw; or the server name of a kept volume.',
  }),
})
