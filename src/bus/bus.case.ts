/**
 * The Bus contract (bus.ts), one suite for every implementation: the in-process bus and NATS.
 * Imported only by tests (test/bus-local.test.ts, test/bus-nats.test.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { BusError, subjectToken, type Bus, type BusMessage } from './bus.js';
import { HubBus, SUBJECTS, type MethodReply } from './subjects.js';

export interface BusHarness {
  /** A new, connected bus; `onHandlerError` hears of every handler that threw. */
  open(onHandlerError: (err: unknown, subject: string) => void): Promise<Bus>;
  /** Unique per run, so runs sharing one NATS server never see each other. */
  prefix: string;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Resolves once `cond` holds, or fails after `ms` naming what it waited for. */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function codeOf(err: unknown): string | undefined {
  return err instanceof BusError ? err.code : undefined;
}

export function busConformance(name: string, harness: BusHarness): void {
  describe(`bus conformance: ${name}`, () => {
    let bus: Bus;
    const handlerErrors: Array<{ err: unknown; subject: string }> = [];
    let n = 0;
    /** A fresh subject root for each test. */
    const root = () => `${harness.prefix}.t${++n}`;

    before(async () => {
      bus = await harness.open((err, subject) => handlerErrors.push({ err, subject }));
    });
    after(async () => {
      await bus.close();
    });

    it('delivers the messages of one publisher on one subject in order, never inside publish', async () => {
      const s = `${root()}.seq`;
      const got: number[] = [];
      bus.subscribe(s, (m) => void got.push(Number(dec(m.data))));
      for (let i = 0; i < 2000; i++) {
        bus.publish(s, enc(String(i)));
        assert.equal(got.length, 0, 'a handler ran inside publish');
      }
      await bus.flush();
      await until('2000 messages', () => got.length === 2000);
      assert.deepEqual(got, Array.from({ length: 2000 }, (_, i) => i));
    });

    it('matches * to exactly one token and > to one or more trailing tokens', async () => {
      const r = root();
      const seen: Record<string, string[]> = { star: [], tail: [], mid: [], exact: [] };
      bus.subscribe(`${r}.a.*`, (m) => void seen.star?.push(m.subject));
      bus.subscribe(`${r}.a.>`, (m) => void seen.tail?.push(m.subject));
      bus.subscribe(`${r}.*.c`, (m) => void seen.mid?.push(m.subject));
      bus.subscribe(`${r}.a.b`, (m) => void seen.exact?.push(m.subject));
      for (const s of ['a', 'a.b', 'a.b.c', 'x.c', 'a.c', 'done']) bus.publish(`${r}.${s}`, enc(s));
      const done: string[] = [];
      bus.subscribe(`${r}.fin`, () => void done.push('x'));
      bus.publish(`${r}.fin`, enc(''));
      await bus.flush();
      await until('the marker', () => done.length === 1);
      await until('every match', () => (seen.tail?.length ?? 0) === 3);
      assert.deepEqual(seen.star?.sort(), [`${r}.a.b`, `${r}.a.c`]);
      assert.deepEqual(seen.tail?.sort(), [`${r}.a.b`, `${r}.a.b.c`, `${r}.a.c`]);
      assert.deepEqual(seen.mid?.sort(), [`${r}.a.c`, `${r}.x.c`]);
      assert.deepEqual(seen.exact, [`${r}.a.b`]);
    });

    it('gives each message to exactly one member of a queue group, and to every plain subscriber', async () => {
      const s = `${root()}.work`;
      const members: number[][] = [[], [], []];
      members.forEach((got) => bus.subscribe(s, (m) => void got.push(Number(dec(m.data))), { queue: 'workers' }));
      const plain: number[] = [];
      bus.subscribe(s, (m) => void plain.push(Number(dec(m.data))));
      for (let i = 0; i < 300; i++) bus.publish(s, enc(String(i)));
      await bus.flush();
      await until('300 on the plain subscriber', () => plain.length === 300);
      await until('300 in the group', () => members.flat().length >= 300);
      await new Promise((r) => setTimeout(r, 100)); // a duplicate would have arrived by now
      const all = members.flat().sort((a, b) => a - b);
      assert.deepEqual(all, Array.from({ length: 300 }, (_, i) => i), 'each message exactly once in the group');
      for (const got of members) assert.ok(got.length > 0, 'every member takes a share');
    });

    it('answers a request from one responder of a queue group', async () => {
      const s = `${root()}.echo`;
      let served = 0;
      for (let i = 0; i < 2; i++) {
        bus.subscribe(
          s,
          (m) => {
            served++;
            m.respond(enc(`echo:${dec(m.data)}`));
          },
          { queue: 'echo' },
        );
      }
      const answer = await bus.request(s, enc('hi'), { timeoutMs: 5000 });
      assert.equal(dec(answer), 'echo:hi');
      assert.equal(served, 1);
    });

    it('answers from an async handler, and says false when a plain message is answered', async () => {
      const s = `${root()}.async`;
      const respondedPlain: boolean[] = [];
      bus.subscribe(s, async (m: BusMessage) => {
        await new Promise((r) => setTimeout(r, 20));
        const ok = m.respond(enc('later'));
        if (dec(m.data) === 'plain') respondedPlain.push(ok);
      });
      assert.equal(dec(await bus.request(s, enc('q'), { timeoutMs: 5000 })), 'later');
      bus.publish(s, enc('plain'));
      await until('the plain message', () => respondedPlain.length === 1);
      assert.equal(respondedPlain[0], false);
    });

    it('fails a request nobody answers in time with Timeout', async () => {
      const s = `${root()}.silent`;
      bus.subscribe(s, () => undefined);
      await assert.rejects(bus.request(s, enc('?'), { timeoutMs: 300 }), (err) => codeOf(err) === 'Timeout');
    });

    it('fails a request nobody listens to with NoResponders, without waiting for the timeout', async () => {
      await assert.rejects(bus.request(`${root()}.nobody`, enc('?'), { timeoutMs: 60_000 }), (err) => codeOf(err) === 'NoResponders');
    });

    it('stops delivering after unsubscribe', async () => {
      const s = `${root()}.unsub`;
      const gone: string[] = [];
      const stays: string[] = [];
      const sub = bus.subscribe(s, (m) => void gone.push(dec(m.data)));
      bus.subscribe(s, (m) => void stays.push(dec(m.data)));
      bus.publish(s, enc('1'));
      await bus.flush();
      await until('the first message on both', () => gone.length === 1 && stays.length === 1);
      sub.unsubscribe();
      await bus.flush();
      bus.publish(s, enc('2'));
      bus.publish(s, enc('3'));
      await bus.flush();
      await until('the later messages', () => stays.length === 3);
      assert.deepEqual(gone, ['1']);
      // A request to a subject whose only subscriber left has no responders.
      const only = `${root()}.unsub-req`;
      bus.subscribe(only, (m) => void m.respond(enc('x'))).unsubscribe();
      await bus.flush();
      await assert.rejects(bus.request(only, enc('?'), { timeoutMs: 60_000 }), (err) => codeOf(err) === 'NoResponders');
    });

    it('survives a handler that throws or rejects, and reports it', async () => {
      const s = `${root()}.boom`;
      const got: string[] = [];
      const before = handlerErrors.length;
      bus.subscribe(s, (m) => {
        if (dec(m.data) === 'sync') throw new Error('sync boom');
        got.push(dec(m.data));
      });
      bus.subscribe(s, async (m) => {
        if (dec(m.data) === 'async') throw new Error('async boom');
      });
      for (const w of ['sync', 'async', 'after']) bus.publish(s, enc(w));
      await bus.flush();
      await until('the message after the failures', () => got.includes('after'));
      await until('both failures reported', () => handlerErrors.length >= before + 2);
      const messages = handlerErrors.slice(before).map((e) => (e.err as Error).message).sort();
      assert.deepEqual(messages, ['async boom', 'sync boom']);
      assert.ok(handlerErrors.slice(before).every((e) => e.subject === s));
      // Still answering requests.
      const r = `${root()}.still`;
      bus.subscribe(r, (m) => void m.respond(m.data));
      assert.equal(dec(await bus.request(r, enc('alive'), { timeoutMs: 5000 })), 'alive');
    });

    it('carries a large payload intact both ways, and refuses one above maxPayload', async () => {
      const s = `${root()}.big`;
      const big = randomBytes(900 * 1024);
      bus.subscribe(s, (m) => void m.respond(m.data));
      const back = await bus.request(s, big, { timeoutMs: 10_000 });
      assert.equal(Buffer.compare(Buffer.from(back), big), 0);
      assert.ok(bus.maxPayload >= 1024 * 1024);
      assert.throws(() => bus.publish(s, new Uint8Array(bus.maxPayload + 1)), (err) => codeOf(err) === 'PayloadTooLarge');
    });

    it('refuses a wildcard or an empty token in a subject one publishes to', () => {
      const r = root();
      for (const bad of [`${r}.*`, `${r}.>`, `${r}..x`, `${r}.a b`, '']) {
        assert.throws(() => bus.publish(bad, enc('x')), (err) => codeOf(err) === 'InvalidSubject', bad);
      }
      assert.throws(() => bus.subscribe(`${r}.>.x`, () => undefined), (err) => codeOf(err) === 'InvalidSubject');
    });

    it('keeps ids that hold subject characters apart as single tokens', async () => {
      const r = root();
      const ids = ['a.b', 'a', '*', '>', 'x y', '%', '', 'é', '😀'];
      const tokens = ids.map(subjectToken);
      assert.equal(new Set(tokens).size, ids.length);
      const got: string[] = [];
      bus.subscribe(`${r}.*`, (m) => void got.push(m.subject));
      for (const t of tokens) bus.publish(`${r}.${t}`, enc(''));
      await bus.flush();
      await until('every id', () => got.length === ids.length);
    });

    it('types subjects: a method request reaches the holder of that identity only', async () => {
      const hub = new HubBus(bus, `${root()}`);
      const sub = hub.serve(
        SUBJECTS.methodRequest,
        async (q) => ({ status: 200, payload: { echo: q.methodName, who: q.deviceId } }) satisfies MethodReply,
        { queue: 'holder' },
        'dev.1',
        null,
      );
      const ask = (deviceId: string) =>
        hub.request(SUBJECTS.methodRequest, { deviceId, moduleId: null, methodName: 'reboot', payload: null, connectTimeoutMs: 0, responseTimeoutMs: 1000 }, 5000, deviceId, null);
      assert.deepEqual(await ask('dev.1'), { status: 200, payload: { echo: 'reboot', who: 'dev.1' } });
      await assert.rejects(ask('dev'), (err) => codeOf(err) === 'NoResponders');
      const seen: Array<{ node: string; local: boolean; deviceId: string }> = [];
      hub.subscribe(SUBJECTS.c2dEnqueued, (d, meta) => void seen.push({ ...meta, deviceId: d.deviceId }));
      hub.publish(SUBJECTS.c2dEnqueued, { deviceId: 'd1', cause: 'sent' });
      await until('the typed event', () => seen.length === 1);
      assert.deepEqual(seen, [{ node: bus.nodeId, local: true, deviceId: 'd1' }]);
      sub.unsubscribe();
    });

    it('drains: a handler in flight finishes, then the bus is closed', async () => {
      const other = await harness.open(() => undefined);
      const s = `${root()}.drain`;
      let finished = false;
      let started = false;
      other.subscribe(s, async () => {
        started = true;
        await new Promise((r) => setTimeout(r, 100));
        finished = true;
      });
      other.publish(s, enc('x'));
      await other.flush();
      await until('the handler to start', () => started);
      await other.drain();
      assert.equal(finished, true);
      await other.closed;
      assert.throws(() => other.publish(s, enc('x')), (err) => codeOf(err) === 'Closed');
    });

    it('closes: pending requests fail with Closed, publishing throws Closed', async () => {
      const other = await harness.open(() => undefined);
      const s = `${root()}.close`;
      other.subscribe(s, () => undefined);
      const pending = other.request(s, enc('?'), { timeoutMs: 30_000 });
      await other.flush();
      await other.close();
      await assert.rejects(pending, (err) => codeOf(err) === 'Closed');
      assert.throws(() => other.publish(s, enc('x')), (err) => codeOf(err) === 'Closed');
      await other.closed;
    });
  });
}
