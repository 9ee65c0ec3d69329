/**
 * The layers, bottom up: schemas → lib/core → lib/progress → lib/{auth,gitlab,hub} → lib/servers
 * → lib/kubernetes → plugins → routes → app. Nothing imports upwards or in a cycle; the service
 * never imports the development harness (dev/), the tests, the benchmarks or the scripts; the
 * credential proxy (git-proxy/) stands alone, as it runs in a pod of its own.
 * `test/layering.test.ts` runs these rules; `npx depcruise -c .dependency-cruiser.cjs .` too.
 */
const below = (from, ...to) => ({ from: { path: from }, to: { path: to.join('|') } })

module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    { name: 'schemas-are-the-bottom', severity: 'error', ...below('^schemas/', '^(lib|plugins|routes|app)') },
    {
      name: 'core-depends-on-nothing-of-lib',
      severity: 'error',
      ...below('^lib/core/', '^lib/(?!core/)', '^(plugins|routes|app)'),
    },
    {
      name: 'progress-is-vocabulary',
      severity: 'error',
      ...below('^lib/progress/', '^lib/(?!core/|progress/)'),
    },
    {
      name: 'upstream-clients-know-no-servers',
      severity: 'error',
      ...below('^lib/(auth|gitlab|hub)/', '^lib/(servers|kubernetes)/'),
    },
    {
      name: 'servers-use-pods-through-their-port',
      severity: 'error',
      ...below('^lib/servers/', '^lib/kubernetes/'),
    },
    {
      name: 'lib-is-framework-free-of-the-app',
      severity: 'error',
      ...below('^lib/', '^(plugins|routes|app)'),
    },
    { name: 'plugins-below-routes', severity: 'error', ...below('^plugins/', '^(routes|app)') },
    {
      name: 'service-never-imports-the-harness',
      severity: 'error',
      ...below('^(lib|plugins|routes|schemas|git-proxy)/|^(app|server)\\.ts$', '^(dev|test|bench|scripts)/'),
    },
    { name: 'harness-is-not-a-test', severity: 'error', ...below('^(dev|bench|scripts)/', '^test/') },
    {
      name: 'git-proxy-stands-alone',
      severity: 'error',
      from: { path: '^git-proxy/' },
      to: { path: '^(?!git-proxy/|node_modules/)', dependencyTypesNot: ['core'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|client/generated)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
