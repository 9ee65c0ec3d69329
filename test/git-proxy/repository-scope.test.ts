import t from 'tap'
import { isInsideRepository, parseRepositoryUrl } from '../../git-proxy/repository-scope.js'

const repository = parseRepositoryUrl('https://gitlab.example.com/ns/project.git')

t.test('paths inside the repository get credentials, their neighbours do not', async (t) => {
  const table: [string, boolean][] = [
    ['/ns/project.git', true],
    ['/ns/project.git/info/refs', true],
    ['/ns/project.git/git-upload-pack', true],
    ['/ns/project.git/git-receive-pack', true],
    ['/ns/project.git/info/lfs/objects/batch', true],
    ['/ns/project.git/gitlab-lfs/objects/0123abcd/42', true],
    ['/ns/project/info/lfs/objects/batch', true],
    ['/ns/project/info/refs', true],
    ['/ns/project/gitlab-lfs/objects/0123abcd/42', true],
    ['/ns/project.git%2Finfo%2Frefs', false],
    ['/ns/project-other.git', false],
    ['/ns/project-other.git/info/refs', false],
    ['/ns/project.gitx/info/refs', false],
    ['/ns/project.git/../other.git/info/refs', false],
    ['/ns/project.git/%2e%2e/other.git/info/refs', false],
    ['/ns/project.git/%2E%2E/other.git/info/refs', false],
    ['/ns/project.git/./info/refs', false],
    ['/ns/project.git/..%2fother.git', false],
    ['/ns/project.git/..%5cother.git', false],
    ['/ns/project.git/%ZZ', false],
    ['/ns/project', false],
    ['/ns/project/-/settings/repository', false],
    ['/ns/other.git', false],
    ['/ns', false],
    ['/NS/Project.git/info/refs', false],
    ['//ns/project.git/info/refs', false],
    ['/api/v4/projects/1', false],
  ]
  for (const [path, inside] of table) {
    t.equal(isInsideRepository(repository, path), inside, `${path} ${inside ? 'inside' : 'outside'}`)
  }
})

t.test('the repository URL is checked', async (t) => {
  t.throws(() => parseRepositoryUrl('ftp://host/ns/p.git'), /http:\/\/ or https:\/\//)
  t.throws(() => parseRepositoryUrl('https://host/p.git'), /namespace\/project/)
  t.throws(() => parseRepositoryUrl('https://user:pw@host/ns/p.git'), /credentials/)
  t.match(parseRepositoryUrl('https://Host:8443/a/b/p.git'), {
    hostname: 'host',
    port: 8443,
    gitPath: '/a/b/p.git',
    barePath: '/a/b/p',
  })
  t.match(parseRepositoryUrl('http://host/a/p'), { port: 80, gitPath: '/a/p.git' })
})
