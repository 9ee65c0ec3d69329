/** The core/v1 calls the service makes, as the metrics' operation patterns. */
export const LIST_PODS = 'GET /api/v1/namespaces/{namespace}/pods'
export const LIST_EVENTS = 'GET /api/v1/namespaces/{namespace}/events'
export const READ_POD_LOG = 'GET /api/v1/namespaces/{namespace}/pods/{name}/log'
export const DELETE_POD = 'DELETE /api/v1/namespaces/{namespace}/pods/{name}'
export const LIST_PVCS = 'GET /api/v1/namespaces/{namespace}/persistentvolumeclaims'
export const PATCH_PVC = 'PATCH /api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}'
export const DELETE_PVC = 'DELETE /api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}'
