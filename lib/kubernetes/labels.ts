/** How the spawner marks a notebook server's pod: the labels and annotations the lookup relies on. */

/** Label with the escaped hub user name (see `escapeUsername`); the only label pods are selected by. */
export const USERNAME_LABEL = 'renku.io/username'
/** Annotation KubeSpawner sets to the hub's server name (empty for the default server). */
export const SERVERNAME_ANNOTATION = 'hub.jupyter.org/servername'
/** Annotation KubeSpawner sets to the unescaped hub user name. */
export const HUB_USERNAME_ANNOTATION = 'hub.jupyter.org/username'
/** The container whose status, requests and logs describe the server. */
export const NOTEBOOK_CONTAINER = 'notebook'

const SAFE = /^[A-Za-z0-9]$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/**
 * The value the spawner puts in the `renku.io/username` label: Python's
 * `escapism.escape(name, escape_char='-').lower()`. Every character other than an ASCII
 * letter or digit (the escape character `-` included) becomes `-` plus the upper-case hex
 * of each of its UTF-8 bytes, then the whole is lower-cased: `alice@example.com` →
 * `alice-40example-2ecom`, `jean-luc` → `jean-2dluc`.
 *
 * Lower-casing makes `Alice` and `alice` share a label, so the lookup also checks the
 * `hub.jupyter.org/username` annotation, which holds the name unescaped.
 */
export function escapeUsername(name: string): string {
  let out = ''
  for (const char of name) {
    if (SAFE.test(char)) {
      out += char
      continue
    }
    for (const byte of Buffer.from(char, 'utf8')) out += `-${byte.toString(16).toUpperCase()}`
  }
  return out.toLowerCase()
}

/**
 * Whether Kubernetes accepts the value as a label value. A name whose escaped form is not
 * one (longer than 63 characters, or starting with an escaped character) cannot be on any
 * pod, so the lookup answers "no pods" without asking.
 */
export function isLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value)
}
