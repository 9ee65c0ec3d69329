/**
 * Session volumes in Kubernetes: the PersistentVolumeClaims KubeSpawner creates per named server
 * (`storage_pvc_ensure`, `delete_pvc` off). The service finds them by label, never by a name it
 * computes, so the spawner's `pvc_name_template` is free; what the spawner config must put on
 * them is the contract in README "Session volumes".
 *
 * Calls: one claim list by label (`renku.io/username=<escaped user>` for a user, `renku.io/session-volume=true`
 * for the sweep), the pods from the watched copy (one list while it is not current), a merge-patch
 * of the `renku.io/stopped-at` annotation, one delete.
 */
import {
  type CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1PersistentVolumeClaim,
  type V1Pod,
} from '@kubernetes/client-node'
import type { UpstreamObserver } from '../core/metrics.js'
import type { SessionVolume, VolumeStore } from '../servers/volumes.js'
import { httpStatus, observeCall, toUpstreamError } from './errors.js'
import {
  escapeUsername,
  HUB_USERNAME_ANNOTATION,
  isLabelValue,
  SERVERNAME_ANNOTATION,
  USERNAME_LABEL,
} from './labels.js'
import { DELETE_PVC, LIST_PVCS, PATCH_PVC } from './operations.js'

/** Label on every session volume, so the sweep lists them all and nothing else. */
export const SESSION_VOLUME_LABEL = 'renku.io/session-volume'
/** When the volume's server was first seen stopped (ISO 8601), set and cleared by the service. */
export const STOPPED_AT_ANNOTATION = 'renku.io/stopped-at'

export interface KubernetesVolumeStoreOptions {
  api: CoreV1Api
  namespace: string
  /** The notebook pods (from the watched copy when current). */
  pods(): Promise<V1Pod[]>
  observe?: UpstreamObserver
}

/** Claims some pod mounts; a pod on its way out still holds its claim. */
function claimsInUse(pods: V1Pod[]): Set<string> {
  const names = new Set<string>()
  for (const pod of pods) {
    for (const volume of pod.spec?.volumes ?? []) {
      const claim = volume.persistentVolumeClaim?.claimName
      if (claim) names.add(claim)
    }
  }
  return names
}

export class KubernetesVolumeStore implements VolumeStore {
  readonly upstream = 'Kubernetes'

  constructor(private readonly options: KubernetesVolumeStoreOptions) {}

  private async list(labelSelector: string): Promise<SessionVolume[]> {
    const { api, namespace, observe } = this.options
    let claims: V1PersistentVolumeClaim[]
    let pods: V1Pod[]
    try {
      ;[claims, pods] = await Promise.all([
        observeCall(observe, LIST_PVCS, () =>
          api.listNamespacedPersistentVolumeClaim({ namespace, labelSelector }),
        ).then((list) => list.items),
        this.options.pods(),
      ])
    } catch (error) {
      throw toUpstreamError(error, 'list persistent volume claims')
    }
    const inUse = claimsInUse(pods)
    return claims.flatMap((claim) => {
      const metadata = claim.metadata ?? {}
      const annotations = metadata.annotations ?? {}
      const user = annotations[HUB_USERNAME_ANNOTATION]
      const server = annotations[SERVERNAME_ANNOTATION]
      // One being deleted is no longer a volume to resume on or to list.
      if (!metadata.name || !user || !server || metadata.deletionTimestamp) return []
      return [
        {
          id: metadata.name,
          user,
          server,
          namespace: annotations['renku.io/namespace'] ?? '',
          project: annotations['renku.io/projectName'] ?? '',
          branch: annotations['renku.io/branch'] ?? '',
          commitSha: annotations['renku.io/commit-sha'] ?? '',
          stoppedAt: annotations[STOPPED_AT_ANNOTATION] || null,
          inUse: inUse.has(metadata.name),
        },
      ]
    })
  }

  async listForUser(user: string): Promise<SessionVolume[]> {
    const label = escapeUsername(user)
    if (!isLabelValue(label)) return []
    const volumes = await this.list(`${SESSION_VOLUME_LABEL}=true,${USERNAME_LABEL}=${label}`)
    // Escaping lower-cases: `Alice` and `alice` share a label value, not the annotation.
    return volumes.filter((volume) => volume.user === user)
  }

  listAll(): Promise<SessionVolume[]> {
    return this.list(`${SESSION_VOLUME_LABEL}=true`)
  }

  async delete(volume: SessionVolume): Promise<void> {
    const { api, namespace, observe } = this.options
    try {
      await observeCall(observe, DELETE_PVC, () =>
        api.deleteNamespacedPersistentVolumeClaim({ name: volume.id, namespace }),
      )
    } catch (error) {
      // Another replica (or the sweep) was first.
      if (httpStatus(error) === 404) return
      throw toUpstreamError(error, 'delete persistent volume claim')
    }
  }

  async setStoppedAt(volume: SessionVolume, at: string | null): Promise<void> {
    const { api, namespace, observe } = this.options
    try {
      await observeCall(observe, PATCH_PVC, () =>
        api.patchNamespacedPersistentVolumeClaim(
          {
            name: volume.id,
            namespace,
            body: { metadata: { annotations: { [STOPPED_AT_ANNOTATION]: at } } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      )
    } catch (error) {
      if (httpStatus(error) === 404) return
      throw toUpstreamError(error, 'annotate persistent volume claim')
    }
  }
}
