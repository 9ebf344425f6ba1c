/**
 * The hub's AMQP output (src/protocol/amqp/rhea-output.ts): frames serialized as rhea encodes them,
 * into one buffer, written once per pass. What it must keep is rhea's wire bytes, every frame in
 * order, and what rhea changes right after queueing a frame (the close's error).
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import rhea, { type Connection, type EventContext, type Sender } from 'rhea';
import { passOutput } from '../src/protocol/amqp/rhea-output.js';
import { memoryPair } from './support/protocol-harness.js';

const require = createRequire(import.meta.url);
const frames = require('rhea/lib/frames.js') as { write_frame(frame: unknown): Buffer };

/**
 * A server connection over `stream` with the pass output installed as the AMQP admission does;
 * `serialized` gets rhea's own serialization of each frame, made when the frame is encoded.
 */
function serverOver(stream: Duplex, serialized: Buffer[] = []): Connection {
  const container = rhea.create_container({ id: 'hub' });
  const conn = container.create_connection({ id: 'hub-conn' } as never);
  const raw = conn as unknown as { _process(): void; accept(socket: unknown): void; amqp_transport: { encode(frame: unknown): void } };
  const process = raw._process.bind(conn);
  const out = passOutput(conn);
  raw._process = () => out.pass(process);
  const encode = raw.amqp_transport.encode;
  raw.amqp_transport.encode = (frame: unknown) => {
    serialized.push(frames.write_frame(frame));
    encode(frame);
  };
  raw.accept(stream);
  return conn;
}

/** A rhea client over the other end of the pair. */
function clientOver(stream: Duplex): Connection {
  return rhea.create_container({ id: 'client' }).connect({
    reconnect: false,
    connection_details: () => ({
      host: 'hub',
      port: 0,
      connect: (_port: number, _host: string, _options: unknown, connected: () => void) => {
        process.nextTick(connected);
        return stream;
      },
    }),
  } as never);
}

describe('AMQP output: one write per pass', () => {
  it('writes what rhea would, frame for frame, and a pass of transfers in one write', async () => {
    const [clientEnd, serverEnd] = memoryPair();
    const written: Buffer[] = [];
    const write = serverEnd.write.bind(serverEnd) as (chunk: Buffer) => boolean;
    serverEnd.write = ((chunk: Buffer) => {
      written.push(Buffer.from(chunk));
      return write(chunk);
    }) as typeof serverEnd.write;
    const serialized: Buffer[] = [];
    const server = serverOver(serverEnd, serialized);
    const senders = new Promise<Sender>((resolve) => server.on('sender_open', (ctx: EventContext) => resolve(ctx.sender!)));
    server.on('connection_open', (ctx: EventContext) => ctx.connection.open());

    const client = clientOver(clientEnd);
    const bodies: Buffer[] = [];
    // From empty to over a megabyte: the buffer grows past its first size within one pass.
    for (let i = 0; i < 60; i++) bodies.push(Buffer.alloc(i === 59 ? 1_100_000 : i * 997, i));
    const got: Buffer[] = [];
    const all = new Promise<void>((resolve) =>
      client.open_receiver({ source: 'q', credit_window: 100 }).on('message', (ctx: EventContext) => {
        got.push(Buffer.from(ctx.message!.body.content as Buffer));
        if (got.length === bodies.length) resolve();
      }),
    );
    const sender = await senders;
    await new Promise<void>((resolve) => (sender.sendable() ? resolve() : sender.once('sendable', () => resolve())));

    const before = written.length;
    for (const body of bodies) sender.send({ body: rhea.message.data_section(body) });
    await all;
    assert.deepEqual(got, bodies, 'every message, in order, byte for byte');
    assert.equal(written.length - before, 1, 'the pass that sent the 60 transfers wrote once');

    // Byte for byte what rhea's own serializer makes of the same frames: the protocol header, then
    // open, begin, attach, flow answers and the 60 transfers.
    assert.ok(serialized.length >= 63, `${serialized.length} frames`);
    assert.deepEqual(Buffer.concat(written), Buffer.concat([Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'), ...serialized]));
    client.close();
  });

  it('sends the close with its error (rhea clears it right after queueing the frame)', async () => {
    const [clientEnd, serverEnd] = memoryPair();
    const server = serverOver(serverEnd);
    server.on('connection_open', (ctx: EventContext) => ctx.connection.close({ condition: 'amqp:unauthorized-access', description: 'not for this device' }));
    const client = clientOver(clientEnd);
    client.on('connection_error', () => undefined);
    const error = await new Promise<{ condition?: unknown; description?: unknown }>((resolve) => client.once('connection_close', (ctx: EventContext) => resolve(ctx.connection.error as never)));
    assert.deepEqual([error.condition, error.description], ['amqp:unauthorized-access', 'not for this device']);
  });
});
