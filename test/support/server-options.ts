/** The server options a launch that chooses none gets: the defaults of config/server-options.json. */
export const BUNDLED_DEFAULTS = {
  defaultUrl: '/lab',
  cpu_request: 0.5,
  mem_request: '1G',
  disk_request: '1G',
  gpu_request: 0,
  lfs_auto_fetch: false,
}
