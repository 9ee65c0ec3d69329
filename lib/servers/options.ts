import type { ServerOption, ServerOptions, ServerOptionValues } from '../../schemas/server-options.js'
import { ApiError } from '../core/errors.js'

const byteUnits: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
}

/** Bytes in a Kubernetes quantity such as `1G` (10^9) or `1Gi` (2^30); null when it is not one. */
export function parseBytes(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : null
  const match = /^(\d+(?:\.\d+)?)(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(value.trim())
  if (!match) return null
  return Number(match[1]) * (byteUnits[match[2] ?? ''] ?? 1)
}

function describe(value: unknown): string {
  return JSON.stringify(value)
}

function inRange(option: ServerOption, value: unknown): string | null {
  const range = option.value_range
  if (!range) return null
  if (range.type === 'bytes') {
    const bytes = typeof value === 'string' || typeof value === 'number' ? parseBytes(value) : null
    if (bytes === null) return 'must be a size such as "2G" or "512Mi"'
    const min = parseBytes(range.min)
    const max = parseBytes(range.max)
    if ((min !== null && bytes < min) || (max !== null && bytes > max)) {
      return `must be between ${range.min} and ${range.max}`
    }
    return ''
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a number'
  if (value < Number(range.min) || value > Number(range.max))
    return `must be between ${range.min} and ${range.max}`
  return ''
}

/** Why `value` is not acceptable for `option`, or null when it is. */
function problem(option: ServerOption, value: unknown): string | null {
  switch (option.type) {
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false'
    case 'int':
    case 'float': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a number'
      if (option.type === 'int' && !Number.isInteger(value)) return 'must be a whole number'
      if (option.options?.length && !option.allow_any_value) {
        return option.options.includes(value) ? null : `must be one of ${describe(option.options)}`
      }
      const range = inRange(option, value)
      if (range !== null) return range || null
      return value >= 0 ? null : 'must not be negative'
    }
    case 'enum': {
      if (option.options?.some((allowed) => allowed === value && typeof allowed === typeof value)) return null
      if (option.allow_any_value) {
        const range = inRange(option, value)
        if (range === '') return null
        if (range) return range
      }
      return `must be one of ${describe(option.options ?? [])}`
    }
  }
}

/**
 * The complete server options of a launch: each posted value checked against the
 * configured option (no coercion), every missing key filled with its default.
 * Throws a 422 naming each bad key.
 */
export function resolveServerOptions(
  options: ServerOptions,
  posted: Record<string, unknown> = {},
): ServerOptionValues {
  // Posted keys are the client's (`toString`, `constructor`…): only own properties count as options.
  const errors = new Map<string, string[]>()
  for (const [key, value] of Object.entries(posted)) {
    const option = Object.hasOwn(options, key) ? options[key] : undefined
    if (!option) {
      errors.set(`serverOptions.${key}`, [
        `is not a server option; known options: ${Object.keys(options).join(', ')}`,
      ])
      continue
    }
    const why = problem(option, value)
    if (why) errors.set(`serverOptions.${key}`, [why])
  }
  if (errors.size) {
    throw new ApiError(
      422,
      'INVALID_SERVER_OPTIONS',
      `Invalid server options: ${[...errors.keys()].join(', ')}.`,
      { fields: { part: 'json', errors: Object.fromEntries(errors) } },
    )
  }
  return Object.fromEntries(
    Object.entries(options).map(([key, option]) => {
      const chosen = Object.hasOwn(posted, key) ? (posted[key] as ServerOptionValues[string]) : undefined
      return [key, chosen ?? option.default]
    }),
  )
}
