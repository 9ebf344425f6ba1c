/**
 * The TLS bootstrap PKI against real TLS handshakes: certificates from the development CA (and
 * from operator-style RSA / P-384 CAs) must be accepted by Node's TLS client exactly as a device
 * SDK would accept them, and rejected by anyone who trusts a different CA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import {
  createDevRootCa,
  issueServerCertificate,
  loadCaMaterial,
  serverCertificateCovers,
  type CaMaterial,
  type ServerCertMaterial,
} from '../src/pki/dev-ca.js';

interface RunningServer {
  port: number;
  close(): Promise<void>;
}

/** A TLS server on 127.0.0.1 that answers "ok" and tracks its sockets so close() is immediate. */
async function startServer(material: ServerCertMaterial): Promise<RunningServer> {
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ key: material.keyPem, cert: material.chainPem }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.end('ok');
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Resolves with the socket once the handshake (including the identity check) succeeded. */
function connect(opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(opts, () => resolve(socket));
    socket.once('error', (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/** An operator-style CA: a node:crypto key pair with a self-signed CA certificate made here. */
async function operatorCa(
  privateKey: KeyObject,
  publicKey: KeyObject,
  alg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams,
  signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams,
): Promise<string> {
  const subtle = webcrypto.subtle;
  const keys = {
    privateKey: await subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), alg, false, ['sign']),
    publicKey: await subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
  };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Operator Root, O=Example Corp',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 30 * 86_400_000),
    keys,
    signingAlgorithm: signAlg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return cert.toString('pem');
}

let shared: Promise<{ ca: CaMaterial; server: ServerCertMaterial; otherCa: CaMaterial }> | undefined;
function fixtures() {
  shared ??= (async () => {
    const ca = await createDevRootCa({ commonName: 'Gatehouse Test Root' });
    const server = await issueServerCertificate(ca, { hostname: '127.0.0.9', extraNames: ['gatehouse.test'] });
    const otherCa = await createDevRootCa({ commonName: 'Someone Else' });
    return { ca, server, otherCa };
  })();
  return shared;
}

test('root CA: self-signed P-256 CA with the RFC 5280 CA extensions', async () => {
  const { ca } = await fixtures();
  const cert = new X509Certificate(ca.certPem);
  assert.equal(cert.ca, true);
  assert.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey), 'self-signed');
  assert.match(cert.subject, /CN=Gatehouse Test Root/);
  assert.match(cert.subject, /O=Gatehouse/);
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(cert.serialNumber.length, 32, '16-byte serial');
  assert.ok(Number.parseInt(cert.serialNumber.slice(0, 2), 16) < 0x80, 'positive serial');
  assert.ok(Date.now() - new Date(cert.validFrom).getTime() >= 4 * 60_000, 'notBefore backdated for clock skew');
  const parsed = new x509.X509Certificate(ca.certPem);
  const bc = parsed.getExtension(x509.BasicConstraintsExtension);
  assert.ok(bc?.critical && bc.ca && bc.pathLength === 1);
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  assert.ok(ku?.critical);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  assert.equal(createPrivateKey(ca.keyPem).asymmetricKeyType, 'ec', 'a PKCS#8 key that parses');
});

test('server certificate: SAN, EKU, key usage and chain', async () => {
  const { ca, server } = await fixtures();
  const cert = new X509Certificate(server.certPem);
  const san = (cert.subjectAltName ?? '').split(', ');
  for (const entry of ['IP Address:127.0.0.9', 'DNS:gatehouse.test', 'DNS:localhost', 'IP Address:127.0.0.1']) {
    assert.ok(san.includes(entry), `SAN has ${entry}: ${cert.subjectAltName}`);
  }
  assert.equal(san.length, 4, 'no duplicates');
  assert.equal(cert.subject, 'CN=127.0.0.9');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'EKU serverAuth');
  assert.equal(cert.ca, false);
  const parsed = new x509.X509Certificate(server.certPem);
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  assert.ok(ku?.critical);
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  const caSki = new x509.X509Certificate(ca.certPem).getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  assert.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, caSki);
  assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  assert.ok(server.chainPem.startsWith(server.certPem) && server.chainPem.endsWith(ca.certPem));
  assert.equal(createPrivateKey(server.keyPem).asymmetricKeyType, 'ec', 'a PKCS#8 key that parses');
});

test('real TLS: trusted by its CA for every name, rejected by another CA and for other names', async () => {
  const { ca, server, otherCa } = await fixtures();
  const srv = await startServer(server);
  try {
    const a = await connect({ host: '127.0.0.1', port: srv.port, ca: ca.certPem, servername: 'gatehouse.test' });
    assert.equal(a.authorized, true);
    const peer = a.getPeerCertificate();
    assert.equal(tls.checkServerIdentity('127.0.0.9', peer), undefined, 'IP SAN accepted');
    assert.ok(tls.checkServerIdentity('127.0.0.8', peer) instanceof Error, 'other IP refused');
    a.destroy();

    const b = await connect({ host: '127.0.0.1', port: srv.port, ca: ca.certPem, servername: 'localhost' });
    assert.equal(b.authorized, true);
    b.destroy();

    await assert.rejects(
      connect({ host: '127.0.0.1', port: srv.port, ca: otherCa.certPem, servername: 'gatehouse.test' }),
      (err: NodeJS.ErrnoException) => /UNABLE_TO_VERIFY|SELF_SIGNED|unable to verify/i.test(`${err.code} ${err.message}`),
    );
    await assert.rejects(
      connect({ host: '127.0.0.1', port: srv.port, ca: ca.certPem, servername: 'other.test' }),
      { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    );
  } finally {
    await srv.close();
  }
});

test('serverCertificateCovers: names, issuer and remaining validity', async () => {
  const { ca, server, otherCa } = await fixtures();
  const names = ['127.0.0.9', 'GATEHOUSE.test', 'localhost', '127.0.0.1'];
  assert.equal(serverCertificateCovers(server.certPem, names, 300, ca.certPem), true);
  assert.equal(serverCertificateCovers(server.chainPem, names, 0, ca.certPem), true, 'chain accepted, leaf first');
  assert.equal(serverCertificateCovers(server.certPem, [...names, 'other.test'], 1, ca.certPem), false, 'name not in SAN');
  assert.equal(serverCertificateCovers(server.certPem, ['127.0.0.8'], 1, ca.certPem), false, 'IP not in SAN');
  assert.equal(serverCertificateCovers(server.certPem, names, 1, otherCa.certPem), false, 'different CA');
  assert.equal(serverCertificateCovers(server.certPem, names, 366, ca.certPem), false, 'expires too soon');
  assert.equal(serverCertificateCovers(ca.certPem, ['localhost'], 1, ca.certPem), false, 'a CA is not a server cert');
  assert.equal(serverCertificateCovers('garbage', names, 1, ca.certPem), false);
  const v6 = await issueServerCertificate(ca, { hostname: 'hub.example', extraNames: ['0:0:0:0:0:0:0:1'], validityDays: 2 });
  assert.equal(serverCertificateCovers(v6.certPem, ['::1', 'HUB.example.'], 1, ca.certPem), true, 'IPv6 normalised');
  assert.equal(serverCertificateCovers(v6.certPem, ['hub.example'], 3, ca.certPem), false);
});

test('loadCaMaterial: accepts a CA pair, rejects mismatched keys, non-CA certificates and encrypted keys', async () => {
  const { ca, server, otherCa } = await fixtures();
  assert.deepEqual(loadCaMaterial(ca.certPem, ca.keyPem), ca);
  assert.throws(() => loadCaMaterial(ca.certPem, otherCa.keyPem), /does not match/);
  assert.throws(() => loadCaMaterial(server.certPem, server.keyPem), /not a CA/);
  assert.throws(() => loadCaMaterial('not a pem', ca.keyPem), /not a PEM certificate/);
  const encrypted = createPrivateKey(ca.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' });
  assert.throws(() => loadCaMaterial(ca.certPem, encrypted.toString()), /encrypted/);
  const sec1 = createPrivateKey(ca.keyPem).export({ type: 'sec1', format: 'pem' }).toString();
  assert.equal(loadCaMaterial(ca.certPem, sec1).keyPem, ca.keyPem, 'SEC1 key normalised to PKCS#8');
});

test('operator CAs: RSA-2048 and P-384 keys from node:crypto issue certificates that work over TLS', async () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const rsaAlg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const cases = [
    {
      certPem: await operatorCa(rsa.privateKey, rsa.publicKey, rsaAlg, rsaAlg),
      keyPem: rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
      sig: ['RSASSA-PKCS1-v1_5', 'SHA-256'],
    },
    {
      certPem: await operatorCa(p384.privateKey, p384.publicKey, { name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' }),
      keyPem: p384.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      sig: ['ECDSA', 'SHA-384'],
    },
  ];
  for (const c of cases) {
    const ca = loadCaMaterial(c.certPem, c.keyPem);
    assert.equal(createPrivateKey(ca.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString(), ca.keyPem, 'converted to PKCS#8');
    const issued = await issueServerCertificate(ca, { hostname: 'hub.example.com', validityDays: 400 });
    const alg = new x509.X509Certificate(issued.certPem).signatureAlgorithm as { name: string; hash?: { name: string } };
    assert.deepEqual([alg.name, alg.hash?.name], c.sig, 'signature algorithm follows the CA key');
    const caNode = new X509Certificate(ca.certPem);
    assert.ok(new Date(new X509Certificate(issued.certPem).validTo) <= new Date(caNode.validTo), 'leaf clamped to CA expiry');
    assert.equal(serverCertificateCovers(issued.certPem, ['hub.example.com', 'localhost', '127.0.0.1'], 1, ca.certPem), true);
    const srv = await startServer(issued);
    try {
      const s = await connect({ host: '127.0.0.1', port: srv.port, ca: ca.certPem, servername: 'hub.example.com' });
      assert.equal(s.authorized, true);
      s.destroy();
    } finally {
      await srv.close();
    }
  }
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const weakCert = await operatorCa(weak.privateKey, weak.publicKey, rsaAlg, rsaAlg);
  assert.throws(() => loadCaMaterial(weakCert, weak.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()), /at least 2048/);
});
