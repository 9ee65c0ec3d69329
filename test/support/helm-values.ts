/** Values trees as Helm handles them, for the chart tests. */
export type Tree = Record<string, unknown>

export const isObject = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Helm's coalescing of a values file over values.yaml: maps merge, everything else replaces. */
export function merge(base: unknown, override: unknown): unknown {
  if (!isObject(base) || !isObject(override)) return override === undefined ? base : override
  const out: Tree = { ...base }
  for (const [k, v] of Object.entries(override)) out[k] = merge(base[k], v)
  return out
}
