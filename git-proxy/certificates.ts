/**
 * The proxy's own certificate authority, made in memory at start. Git trusts it for the GitLab
 * host only (`http.<repository URL>.sslCAInfo`); its private key never leaves this process.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import forge from 'node-forge'

const DAY_MS = 24 * 60 * 60 * 1000
// Longer than any server lives; the CA exists only as long as the process does.
const VALIDITY_DAYS = 825

export interface CertificateAuthority {
  /** The CA certificate, PEM, for git's `sslCAInfo`. */
  certificatePem: string
  /** A certificate and key for `hostname`, signed by the CA (cached per host). */
  leafFor(hostname: string): { certificatePem: string; keyPem: string }
}

function newKeyPair(): {
  privateKey: forge.pki.rsa.PrivateKey
  publicKey: forge.pki.rsa.PublicKey
  pem: string
} {
  // node:crypto generates the key natively (node-forge's pure-JS generation takes seconds).
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), pem }
}

function newCertificate(publicKey: forge.pki.PublicKey): forge.pki.Certificate {
  const certificate = forge.pki.createCertificate()
  certificate.publicKey = publicKey
  // A positive serial: the high bit cleared so DER does not read it as negative.
  const serial = randomBytes(16)
  serial[0] = (serial[0] ?? 0) & 0x7f
  certificate.serialNumber = serial.toString('hex')
  const now = Date.now()
  certificate.validity.notBefore = new Date(now - DAY_MS)
  certificate.validity.notAfter = new Date(now + VALIDITY_DAYS * DAY_MS)
  return certificate
}

export function createCertificateAuthority(): CertificateAuthority {
  const caKeys = newKeyPair()
  const ca = newCertificate(caKeys.publicKey)
  const caName = [{ name: 'commonName', value: 'renku-notebooks git proxy (this server only)' }]
  ca.setSubject(caName)
  ca.setIssuer(caName)
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ])
  ca.sign(caKeys.privateKey, forge.md.sha256.create())

  // One key for every leaf: there is one GitLab host per proxy, so one leaf in practice.
  const leafKeys = newKeyPair()
  const leaves = new Map<string, { certificatePem: string; keyPem: string }>()
  return {
    certificatePem: forge.pki.certificateToPem(ca),
    leafFor(hostname) {
      const cached = leaves.get(hostname)
      if (cached) return cached
      const leaf = newCertificate(leafKeys.publicKey)
      leaf.setSubject([{ name: 'commonName', value: hostname }])
      leaf.setIssuer(ca.subject.attributes)
      const altName = isIP(hostname) ? { type: 7, ip: hostname } : { type: 2, value: hostname }
      leaf.setExtensions([
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [altName] },
        { name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() },
      ])
      leaf.sign(caKeys.privateKey, forge.md.sha256.create())
      const issued = { certificatePem: forge.pki.certificateToPem(leaf), keyPem: leafKeys.pem }
      leaves.set(hostname, issued)
      return issued
    },
  }
}
