/**
 * The layers, bottom up: schemas → lib/core → lib/progress → lib/{auth,gitlab,hub} → lib/servers
 * → lib/kubernetes → plugins → routes → app. Nothing imports upwards or in a cycle; the service
 * never imports the development harness (dev/), the tests, the benchmarks or the scripts; the
 * credential proxy (git-proxy/) stands alone, as it runs in a pod of its own.
 * `test/layering.test.ts` runs these rules; `npx depcruise -c .dependency-cruiser.cjs .` too.
 */
/** [rule, importer, what it must not import]: each a layer that must not reach upwards. */
const upwardImports = [
  ['schemas-are-the-bottom', '^schemas/', '^(lib|plugins|routes|app)'],
  ['core-depends-on-nothing-of-lib', '^lib/core/', '^lib/(?!core/)|^(plugins|routes|app)'],
  ['progress-is-vocabulary', '^lib/progress/', '^lib/(?!core/|progress/)'],
  ['upstream-clients-know-no-servers', '^lib/(auth|gitlab|hub)/', '^lib/(servers|kubernetes)/'],
  ['servers-use-pods-through-their-port', '^lib/servers/', '^lib/kubernetes/'],
  ['lib-is-framework-free-of-the-app', '^lib/', '^(plugins|routes|app)'],
  ['plugins-below-routes', '^plugins/', '^(routes|app)'],
  [
    'service-never-imports-the-harness',
    '^(lib|plugins|routes|schemas|git-proxy)/|^(app|server|sweep-volumes)\\.ts$',
    '^(dev|test|bench|scripts)/',
  ],
  ['harness-is-not-a-test', '^(dev|bench|scripts)/', '^test/'],
]

module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    ...upwardImports.map(([name, from, to]) => ({
      name,
      severity: 'error',
      from: { path: from },
      to: { path: to },
    })),
    {
      name: 'git-proxy-stands-alone',
      severity: 'error',
      from: { path: '^git-proxy/' },
      to: { dependencyTypes: ['local'], pathNot: '^git-proxy/' },
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
