import fp from 'fastify-plugin'
import type { LogSource, PodInspector, PodLaunchSource } from '../lib/servers/pods.js'
import type { VolumeStore } from '../lib/servers/volumes.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Pod status and logs from the Kubernetes API; null when Kubernetes is not configured. */
    kubernetes: (PodInspector & LogSource & PodLaunchSource) | null
    /** The servers' PersistentVolumeClaims, with session volumes on; else null. */
    kubernetesVolumes: VolumeStore | null
  }
}

/**
 * Decorates `fastify.kubernetes` with a client of the Kubernetes core/v1 API, configured from
 * `KUBECONFIG` or the pod's service account, or with null when there is neither.
 * @see https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
 */
export default fp(
  async (fastify) => {
    const { config } = fastify
    if (!config.kubeconfig && !config.inCluster) {
      fastify.log.info(
        'Kubernetes is not configured (no KUBECONFIG, not in a cluster): pod status, pod logs and forced deletion are off',
      )
      fastify.decorate('kubernetes', null)
      fastify.decorate('kubernetesVolumes', null)
      return
    }
    // Loaded only when used: the client library takes seconds to import.
    const { createKubernetesPods } = await import('../lib/kubernetes/client.js')
    const pods = createKubernetesPods({
      kubeconfig: config.kubeconfig,
      inCluster: config.inCluster,
      namespace: config.kubernetesNamespace,
      timeoutMs: config.upstreamTimeoutMs,
      log: fastify.log,
      observe: fastify.metrics.observeUpstream,
    })
    fastify.log.info(
      { namespace: pods.namespace, source: config.kubeconfig ? 'kubeconfig' : 'service account' },
      'Kubernetes features are on',
    )
    fastify.decorate('kubernetes', pods)
    if (config.sessionVolumes) {
      const { KubernetesVolumeStore } = await import('../lib/kubernetes/volumes.js')
      fastify.decorate(
        'kubernetesVolumes',
        new KubernetesVolumeStore({
          api: pods.api,
          namespace: pods.namespace,
          pods: () => pods.allPods(),
          observe: fastify.metrics.observeUpstream,
        }),
      )
    } else {
      fastify.decorate('kubernetesVolumes', null)
    }
    fastify.addHook('onClose', async () => pods.close())
  },
  { name: 'kubernetes', dependencies: ['config', 'metrics'] },
)
