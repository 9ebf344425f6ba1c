/**
 * What the hub drops from a TLS server socket after its handshake (src/protocol/transport/tls-idle.ts):
 * Node's cleared handshake timer and the never-firing `connect` listener on the TCP socket, and
 * the per-socket options object its sockets share. The socket must carry data and honour a later
 * `setTimeout` exactly as before, and a socket accepted after a certificate reload must have the
 * new secure context; if a Node release stops keeping a leftover, the first test says so (the
 * saving is gone, nothing breaks).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { before, describe, it } from 'node:test';
import { shedHandshakeState } from '../src/protocol/transport/tls-idle.js';
import { makeSelfSigned, type TestCert } from './support/pki.js';

let cert: TestCert;

before(async () => {
  cert = await makeSelfSigned('localhost', { eku: 'serverAuth' });
});

/** A TLS server (handshake timeout on, as the hub's listeners have) handing its sockets to `onSecure`; one client connected. */
async function pair(onSecure: (s: TLSSocket) => void): Promise<{ server: TLSSocket; client: TLSSocket; close: () => Promise<void> }> {
  const srv = createServer({ key: cert.keyPem, cert: cert.certPem, handshakeTimeout: 5000 });
  const accepted = new Promise<TLSSocket>((resolve) =>
    srv.on('secureConnection', (s: TLSSocket) => {
      onSecure(s);
      resolve(s);
    }),
  );
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const client = connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ca: cert.certPem, servername: 'localhost' });
  await once(client, 'secureConnect');
  const server = await accepted;
  return {
    server,
    client,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

const timerSlot = (s: TLSSocket): unknown => {
  const sym = Object.getOwnPropertySymbols(s).find((k) => k.description === 'timeout');
  return sym === undefined ? undefined : (s as unknown as Record<symbol, unknown>)[sym];
};
const parent = (s: TLSSocket): Socket => (s as unknown as { _parent: Socket })._parent;

describe('TLS state shed after the handshake', () => {
  it("Node keeps a cleared handshake timer and a dead 'connect' listener; the hub's listener drops both", async () => {
    const kept = await pair(() => undefined);
    try {
      assert.ok(timerSlot(kept.server) !== null && timerSlot(kept.server) !== undefined, 'Node keeps the cleared handshake timer on the socket');
      assert.equal(parent(kept.server).listenerCount('connect'), 1, "Node leaves a 'connect' listener on the accepted TCP socket");
    } finally {
      await kept.close();
    }
    const shed = await pair(shedHandshakeState);
    try {
      assert.equal(timerSlot(shed.server), null);
      assert.equal(parent(shed.server).listenerCount('connect'), 0);
    } finally {
      await shed.close();
    }
  });

  it('sockets of one server share one options object, and one accepted after a certificate reload has the new context', async () => {
    const srv = createServer({ key: cert.keyPem, cert: cert.certPem, handshakeTimeout: 5000 });
    const accepted: TLSSocket[] = [];
    srv.on('secureConnection', (s: TLSSocket) => {
      shedHandshakeState(s);
      accepted.push(s);
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const clients: TLSSocket[] = [];
    const open = async (): Promise<TLSSocket> => {
      const c = connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ca: cert.certPem, servername: 'localhost' });
      clients.push(c);
      await once(c, 'secureConnect');
      while (accepted.length < clients.length) await new Promise((r) => setImmediate(r));
      return accepted[clients.length - 1] as TLSSocket;
    };
    const options = (s: TLSSocket) => (s as unknown as { _tlsOptions: { secureContext: unknown } })._tlsOptions;
    try {
      const [a, b] = [await open(), await open()];
      assert.equal(options(a), options(b), 'one options object for both');
      const other = await makeSelfSigned('localhost', { eku: 'serverAuth' });
      srv.setSecureContext({ key: other.keyPem, cert: other.certPem });
      const c = connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, ca: other.certPem, servername: 'localhost' });
      clients.push(c);
      await once(c, 'secureConnect');
      assert.equal(c.getPeerCertificate().fingerprint256, other.cert.fingerprint256, 'the new certificate is served');
      while (accepted.length < clients.length) await new Promise((r) => setImmediate(r));
      const fresh = accepted[2] as TLSSocket;
      assert.notEqual(options(fresh), options(a));
      assert.notEqual(options(fresh).secureContext, options(a).secureContext, 'the socket after the reload holds the new context');
    } finally {
      for (const c of clients) c.destroy();
      for (const s of accepted) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    }
  });

  it('a shed socket still carries data both ways and honours a later idle timeout', async () => {
    const p = await pair(shedHandshakeState);
    try {
      p.server.on('data', (d: Buffer) => p.server.write(Buffer.concat([Buffer.from('echo:'), d])));
      p.client.write('hello');
      const [answer] = (await once(p.client, 'data')) as [Buffer];
      assert.equal(answer.toString(), 'echo:hello');
      const started = Date.now();
      p.server.setTimeout(150);
      await once(p.server, 'timeout');
      assert.ok(Date.now() - started >= 100, 'the idle timeout fired when due, not at once');
    } finally {
      await p.close();
    }
  });
});
