/**
 * The AMQP admission end to end in memory (support/protocol-harness.ts): bytes written on a
 * connection pass the frame guard and reach rhea and the hub's AMQP server as on an AMQPS socket.
 * What the guard refuses before authentication closes that connection and is reported with the
 * listener, the reason and the detail; a device that puts its token on $cbs leaves the
 * pre-authentication bounds behind. (The guard's own state machine: frame-guard.test.ts; memory
 * under a flood and the connection caps, over real TLS: preauth-limits.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type rhea from 'rhea';
import { generateSasToken } from '../src/auth/sas.js';
import { AMQP_HEADER, SASL_HEADER, frame, open } from './support/amqp-frames.js';
import { startProtocolHarness, type HarnessAmqp, type ProtocolHarness } from './support/protocol-harness.js';

let h: ProtocolHarness;

before(async () => {
  h = await startProtocolHarness();
});

after(async () => {
  await h.close();
});

/** Writes `bytes` on a new connection from `remote`; resolves with the refusal line once the hub closed it. */
async function refusedFor(remote: string, bytes: Buffer): Promise<Record<string, unknown> | undefined> {
  const mark = h.log.mark();
  const c: HarnessAmqp = h.amqpConnection({ remoteAddress: remote });
  c.stream.write(bytes);
  await c.closed;
  assert.deepEqual(h.log.errorsSince(mark), [], 'nothing failed inside');
  return h.log.since(mark).find((l) => l.event === 'connection.refused' && l.remote === remote);
}

describe('AMQP before authentication', () => {
  it('a header and an open get the hub\'s header and open back', async () => {
    const c = h.amqpConnection();
    c.stream.write(Buffer.concat([AMQP_HEADER, open('client')]));
    for (let i = 0; i < 100 && c.received().length < 16; i++) await new Promise((r) => setTimeout(r, 10));
    const got = c.received();
    assert.deepEqual(got.subarray(0, 8), AMQP_HEADER, 'the AMQP header');
    // The open performative (descriptor 0x10) in the first frame after it.
    assert.equal(got[8 + 8 + 2], 0x10, 'an open frame');
    assert.ok(!c.isClosed());
    c.stream.destroy();
  });

  it('a second AMQP protocol header is refused with the reason', async () => {
    const line = await refusedFor('192.0.2.1', Buffer.concat([AMQP_HEADER, open('client'), AMQP_HEADER]));
    assert.ok(line !== undefined, 'the refusal is logged');
    assert.equal(line.listener, 'amqp');
    assert.equal(line.reason, 'protocol_violation');
    assert.equal(line.detail, 'a protocol header after the AMQP header');
  });

  it('a second SASL header is refused with the reason', async () => {
    const line = await refusedFor('192.0.2.2', Buffer.concat([SASL_HEADER, SASL_HEADER]));
    assert.equal(line?.reason, 'protocol_violation');
    assert.match(String(line?.detail), /AMQP header before the SASL outcome|second SASL header/);
  });

  it('a frame over 512 bytes before the open is refused', async () => {
    const line = await refusedFor('192.0.2.3', Buffer.concat([AMQP_HEADER, frame(Buffer.alloc(600))]));
    assert.equal(line?.reason, 'protocol_violation');
    assert.equal(line?.detail, 'a frame of 608 bytes exceeds the maximum of 512 before the open');
  });

  it('a frame over the pre-authentication limit after the open is refused as a pre-auth limit', async () => {
    const line = await refusedFor('192.0.2.4', Buffer.concat([AMQP_HEADER, open('client'), frame(Buffer.alloc(9000))]));
    assert.equal(line?.reason, 'pre_auth_limit');
    assert.equal(line?.detail, 'a frame of 9008 bytes exceeds the maximum of 8192 before authentication');
  });

  it('what is not AMQP at all is refused at its first bytes', async () => {
    const line = await refusedFor('192.0.2.5', Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    assert.equal(line?.reason, 'protocol_violation');
    assert.equal(line?.detail, 'not an AMQP protocol header');
  });
});

describe('AMQP after authentication', () => {
  it('a device that put its token on $cbs may send frames over the pre-authentication limit', async () => {
    const key = await h.device('amqp-mem');
    const { conn, peer } = await h.amqpClient({ remoteAddress: '192.0.2.10' });
    try {
      const cbsIn = conn.open_receiver('$cbs');
      const cbsOut = conn.open_sender('$cbs');
      const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
      await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
      const name = `${h.hostname}/devices/amqp-mem`;
      const token = generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 600 });
      cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'put', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: token });
      assert.equal(await status, 200);

      const mark = h.log.mark();
      const events = conn.open_sender(`/devices/amqp-mem/messages/events`);
      await new Promise<void>((resolve) => events.once('sendable', () => resolve()));
      const accepted = new Promise<void>((resolve, reject) => {
        events.once('accepted', () => resolve());
        events.once('rejected', () => reject(new Error('rejected')));
      });
      // 20 KiB in one transfer: over the 8 KiB pre-authentication frame limit.
      events.send({ body: Buffer.alloc(20 * 1024, 0x61) });
      await accepted;
      assert.ok(!peer.isClosed(), 'the connection stays open');
      assert.equal(h.log.since(mark).find((l) => l.event === 'connection.refused'), undefined);
    } finally {
      conn.close();
    }
  });
});

describe('AMQP: a failure inside the hub while a device link attaches', () => {
  it('refuses that link with amqp:internal-error and logs it; the hub goes on', async () => {
    // The gate's store failing (a database gone): before, the rejection went unhandled and ended the process.
    const gate = h.services.gate;
    const authenticate = gate.authenticate.bind(gate);
    gate.authenticate = () => Promise.reject(new Error('store unavailable'));
    const mark = h.log.mark();
    const { conn } = await h.amqpClient({ remoteAddress: '192.0.2.20' });
    try {
      const receiver = conn.open_receiver('/devices/amqp-fail/messages/devicebound');
      const error = await new Promise<{ condition?: string } | undefined>((resolve) => receiver.once('receiver_close', (ctx: rhea.EventContext) => resolve(ctx.receiver?.error as { condition?: string } | undefined)));
      assert.equal(error?.condition, 'amqp:internal-error');
      const line = h.log.since(mark).find((l) => l.event === 'amqp.attach-failed');
      assert.ok(line !== undefined, JSON.stringify(h.log.since(mark)));
      assert.equal(line.remote, '192.0.2.20');
    } finally {
      gate.authenticate = authenticate;
      conn.close();
    }
    // The same hub still takes a device.
    const key = await h.device('amqp-after');
    const again = await h.amqpClient({ remoteAddress: '192.0.2.21' });
    try {
      const cbsIn = again.conn.open_receiver('$cbs');
      const cbsOut = again.conn.open_sender('$cbs');
      const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
      await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
      const name = `${h.hostname}/devices/amqp-after`;
      cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'put', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 600 }) });
      assert.equal(await status, 200);
    } finally {
      again.conn.close();
    }
  });
});

describe('AMQP: a connection the hub closed', () => {
  it('still gets the answers to what the client sent with its own close (the session end)', async () => {
    // The provisioning SDK, told the connection closed while a link was attaching, ends its session
    // and closes in one write, then waits for the session's end. rhea read the close, ended the
    // socket at once, and the end it owed was never written: the SDK hung until its timeout.
    const key = await h.device('amqp-closer');
    await h.device('amqp-other');
    const { conn, peer } = await h.amqpClient({ remoteAddress: '192.0.2.30' });
    const cbsIn = conn.open_receiver('$cbs');
    const cbsOut = conn.open_sender('$cbs');
    const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
    await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
    const name = `${h.hostname}/devices/amqp-closer`;
    cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'put', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: generateSasToken({ resource: name, key, expiry: Math.floor(Date.now() / 1000) + 600 }) });
    assert.equal(await status, 200);

    const session = cbsOut.session;
    const ended = new Promise<string>((resolve) => {
      session.once('session_close', () => resolve('the hub ended the session'));
      void peer.closed.then(() => resolve('the stream closed first'));
    });
    const closedBy = new Promise<string | undefined>((resolve) =>
      conn.once('connection_close', (ctx: rhea.EventContext) => {
        // As the SDK does: end the session and close, in one pass.
        session.close();
        conn.close();
        resolve((ctx.connection.error as { condition?: string } | undefined)?.condition);
      }),
    );
    conn.on('connection_error', () => undefined);
    // Another device's link: the hub refuses it and closes the connection.
    conn.open_sender('/devices/amqp-other/messages/events').on('sender_error', () => undefined);
    assert.equal(await closedBy, 'amqp:unauthorized-access');
    assert.equal(await ended, 'the hub ended the session');
    await peer.closed;
  });
});
