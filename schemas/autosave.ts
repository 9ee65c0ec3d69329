import { type Static, Type } from '@sinclair/typebox'

export const AutosaveSchema = Type.Object(
  {
    name: Type.String({
      description: 'The autosave branch: `renku/autosave/<user>/<branch>/<commit_sha[:7]>/<head[:7]>`.',
      examples: ['renku/autosave/alice/master/0123abc/4567def'],
    }),
    branch: Type.String({ description: 'The branch of the launch whose work it saved.' }),
    commit: Type.String({ description: 'The commit of that launch, its first 7 characters.' }),
    date: Type.String({ description: 'When the work was saved (the autosave commit), ISO 8601.' }),
    pvs: Type.Boolean({ description: 'Always false: persistent volumes are not supported.' }),
  },
  { $id: 'Autosave', description: 'Unsaved work of a stopped server, saved to GitLab as a branch.' },
)

export const AutosaveListSchema = Type.Object(
  {
    pvsSupport: Type.Boolean({ description: 'Always false: persistent volumes are not supported.' }),
    autosaves: Type.Array(Type.Ref(AutosaveSchema), { description: "The caller's autosaves, newest first." }),
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
    description: 'The autosave branch; its slashes percent-encoded as `%2F` or raw.',
  }),
})
