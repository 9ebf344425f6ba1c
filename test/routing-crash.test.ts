/**
 * Routing survives a crash (issue 17): a hub process routes the telemetry of several devices
 * (the unmodified azure-iot-device over MQTT, QoS 1) by an application property to a file
 * endpoint and by `$body` to a webhook served by this test, the rest to the built-in endpoint by
 * the fallback route. It is killed with SIGKILL twice while devices send and while the
 * dispatchers have a backlog (the webhook refusing every batch the first time, answering slowly
 * the second), and restarted on the same data dir each time. After the last restart and a drain:
 * every acknowledged message reached every endpoint whose route matches it (at least once:
 * duplicates are counted, and allowed), no endpoint got a message its route does not match, each
 * endpoint got each device's messages in order the first time, the fallback still gave the
 * built-in endpoint exactly the messages no route took, and the file endpoint shows everything in
 * files a reader may read (`*.ndjson` outside `.partial/`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import type { MessageEnvelope } from '../src/routing/endpoints/envelope.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { monitorEvents } from './support/monitor.js';
import { policyKey, restClient } from './support/rest.js';

const { Message, NoRetry } = common;
const HOST = '127.0.173.1';
const DEVICES = ['rc-north', 'rc-south', 'rc-east', 'rc-west', 'rc-centre'];

/**
 * What a message is, from its number: which route it matches. `both` matches the two routes;
 * `none` matches neither (a cool JSON body, or a hot body that is not declared JSON, which the
 * router does not parse) and goes to `events` by the fallback route.
 */
type Kind = 'hook' | 'file' | 'both' | 'none';
const KINDS: Kind[] = ['hook', 'file', 'both', 'none', 'none'];
const kindOf = (n: number): Kind => KINDS[n % KINDS.length] as Kind;
const toHook = (k: Kind) => k === 'hook' || k === 'both';
const toFile = (k: Kind) => k === 'file' || k === 'both';

function message(deviceId: string, n: number): InstanceType<typeof Message> {
  const kind = kindOf(n);
  const hot = toHook(kind) || n % KINDS.length === 4;
  const m = new Message(JSON.stringify({ id: `${deviceId}:${n}`, temp: hot ? 40 + (n % 7) : 10 }));
  m.messageId = `${deviceId}:${n}`;
  // The last `none` is hot but not declared JSON: `$body` does not see it.
  if (n % KINDS.length !== 4) {
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
  }
  m.properties.add('level', toFile(kind) ? 'alarm' : 'info');
  return m;
}

const parseId = (id: string): { deviceId: string; n: number } => {
  const i = id.lastIndexOf(':');
  return { deviceId: id.slice(0, i), n: Number(id.slice(i + 1)) };
};
const idOf = (e: Pick<MessageEnvelope, 'body'>): string => (JSON.parse(e.body) as { id: string }).id;

/** The webhook receiver: stores each batch it answers 200 to, in arrival order; can answer slowly, or refuse. */
class Receiver {
  readonly ids: string[] = [];
  refused = 0;
  inFlight = 0;
  delayMs = 0;
  failing = false;
  #server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.inFlight++;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void sleep(this.delayMs).then(() => {
          this.inFlight--;
          if (this.failing) {
            this.refused++;
            res.writeHead(503).end();
            return;
          }
          // Stored before the answer: a hub killed now never learns it was delivered (a duplicate later).
          for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')) as MessageEnvelope[]) this.ids.push(idOf(e));
          res.writeHead(200).end();
        });
      });
      req.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    const s = this.#server;
    if (s === undefined) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeAllConnections();
    await closed;
  }
}

/** Every `.ndjson` under the directory; with `partial`, also what `.partial/` holds (a torn last line skipped). */
function fileIds(dir: string, opts: { partial: boolean }): { ids: string[]; partials: string[] } {
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return { ids: [], partials: [] };
  }
  const rel = names.map((n) => relative(dir, join(dir, n)));
  const partials = rel.filter((p) => p.startsWith('.partial/') && p.endsWith('.part')).sort();
  // `name.ndjson` before `name-1.ndjson` before `name-2.ndjson`: the order chunks were written in a partition.
  const order = (p: string): [string, number] => {
    const m = /^(.*?)(?:-(\d+))?\.ndjson$/.exec(p) as RegExpExecArray;
    return [m[1] as string, Number(m[2] ?? 0)];
  };
  const published = rel
    .filter((p) => p.endsWith('.ndjson') && !p.startsWith('.partial'))
    .sort((a, b) => {
      const [ka, na] = order(a);
      const [kb, nb] = order(b);
      return ka < kb ? -1 : ka > kb ? 1 : na - nb;
    });
  const ids: string[] = [];
  for (const f of [...published, ...(opts.partial ? partials : [])]) {
    const text = readFileSync(join(dir, f), 'utf8');
    const lines = text.split('\n');
    const last = lines.pop();
    if (!f.startsWith('.partial/')) assert.equal(last, '', `${f} ends with a whole line`);
    for (const line of lines) ids.push(idOf(JSON.parse(line) as MessageEnvelope));
  }
  return { ids, partials };
}

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) assert.fail(`never happened: ${what}`);
    await sleep(50);
  }
}

/** Devices streaming until the hub goes: each sends its next message once the last was acknowledged. */
class Devices {
  readonly acked = new Set<string>();
  readonly #next = new Map<string, number>();

  constructor(
    private readonly keys: Map<string, string>,
    private readonly ca: string,
  ) {}

  /** Connects every device and streams until the connection fails (the hub was killed). */
  async stream(): Promise<{ ended: Promise<void> }> {
    const clients = await Promise.all(
      DEVICES.map(async (id) => {
        const client = deviceSdk.Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${this.keys.get(id) ?? ''}`, deviceMqtt.Mqtt);
        // No retry: a send the dead hub never acknowledged fails instead of waiting for the restart.
        client.setRetryPolicy(new NoRetry());
        client.on('error', () => undefined);
        await client.setOptions({ ca: this.ca });
        await client.open();
        return { id, client };
      }),
    );
    const ended = Promise.all(
      clients.map(async ({ id, client }) => {
        const gone = new Promise<void>((resolve) => client.once('disconnect', () => resolve()));
        for (;;) {
          const n = this.#next.get(id) ?? 0;
          this.#next.set(id, n + 1);
          const sent = client.sendEvent(message(id, n)).then(
            () => true,
            () => false,
          );
          // A send in flight when the hub dies may never settle: the disconnect ends it.
          const ok = await Promise.race([sent, gone.then(() => false)]);
          if (!ok) break;
          this.acked.add(`${id}:${n}`);
        }
        await Promise.race([client.close().catch(() => undefined), sleep(2000)]);
      }),
    ).then(() => undefined);
    return { ended };
  }

  ackedWhere(pred: (k: Kind) => boolean): string[] {
    return [...this.acked].filter((id) => pred(kindOf(parseId(id).n)));
  }
}

/** Duplicates, and the first deliveries that came before an earlier message of the same device. */
function examine(ids: string[]): { duplicates: number; outOfOrder: string[]; unique: Set<string> } {
  const unique = new Set<string>();
  const lastOf = new Map<string, number>();
  const outOfOrder: string[] = [];
  let duplicates = 0;
  for (const id of ids) {
    if (unique.has(id)) {
      duplicates++;
      continue;
    }
    unique.add(id);
    const { deviceId, n } = parseId(id);
    if (n < (lastOf.get(deviceId) ?? -1)) outOfOrder.push(id);
    lastOf.set(deviceId, n);
  }
  return { duplicates, outOfOrder, unique };
}

it('kill -9 while routing, twice: after the restart every acknowledged message reaches every endpoint its routes match, in order per device, and nothing else', { timeout: 150_000 }, async (t: TestContext) => {
  const receiver = new Receiver();
  await receiver.start();
  const filesDir = mkdtempSync(join(tmpdir(), 'gh-route-crash-files-'));
  let hub: HubProcess = await startHubProcess({ address: HOST });
  const dataDir = hub.dataDir;
  const restart = async (): Promise<void> => {
    hub = await startHubProcess({ address: HOST, dataDir });
  };
  try {
    const ca = readFileSync(hub.caFile, 'utf8');
    const rest = restClient(HOST, ca, policyKey(dataDir));
    const keys = new Map<string, string>();
    for (const id of DEVICES) {
      const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
      assert.equal(r.status, 200);
      keys.set(id, (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
    }
    const route = (name: string, condition: string, endpoint: string) => ({ name, source: 'DeviceMessages', condition, endpointNames: [endpoint], isEnabled: true });
    const put = await rest('PUT', '/routing', {
      endpoints: { webhooks: [{ name: 'hook', url: `http://127.0.0.1:${receiver.port}/hook` }], files: [{ name: 'archive', directory: filesDir }] },
      routes: [route('hot', '$body.temp > 30', 'hook'), route('alarm', "level = 'alarm'", 'archive')],
      fallbackRoute: { isEnabled: true },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));

    const devices = new Devices(keys, ca);
    const hookGot = () => new Set(receiver.ids).size;
    const kill = async (): Promise<void> => {
      hub.proc.kill('SIGKILL');
      await hub.stop();
    };

    // Round 1: the webhook is slow, then refuses everything: the hook's dispatchers retry a batch and a backlog grows behind it.
    receiver.delayMs = 20;
    const round1 = await devices.stream();
    await until('the webhook got messages and the devices 150 acknowledgements', () => hookGot() >= 30 && devices.acked.size >= 150);
    receiver.failing = true;
    const refusedFrom = receiver.refused;
    const ackedAtRefusal = devices.acked.size;
    await until('the webhook refused a batch while the devices kept sending', () => receiver.refused > refusedFrom && devices.acked.size >= ackedAtRefusal + 100);
    await kill();
    await round1.ended;
    const afterRound1 = devices.acked.size;

    // Round 2: restarted; the webhook answers, slowly, so batches are in flight when the hub dies again.
    receiver.failing = false;
    receiver.delayMs = 150;
    await restart();
    const round2 = await devices.stream();
    const hookBefore2 = receiver.ids.length;
    await until('deliveries resumed after the restart and the devices sent 150 more', () => receiver.ids.length > hookBefore2 && devices.acked.size >= afterRound1 + 150);
    await until('a webhook batch is in flight', () => receiver.inFlight > 0);
    await kill();
    await round2.ended;

    // The last restart; nothing more is sent: what the endpoints get now is the backlog.
    receiver.delayMs = 0;
    await restart();
    const wantHook = devices.ackedWhere(toHook);
    const wantFile = devices.ackedWhere(toFile);
    const wantEvents = devices.ackedWhere((k) => k === 'none');
    await until(
      'the webhook got every acknowledged message its route matches',
      () => {
        const got = new Set(receiver.ids);
        return wantHook.every((id) => got.has(id));
      },
      40_000,
    ).catch((err: unknown) => {
      const got = new Set(receiver.ids);
      throw new Error(`${(err as Error).message}: ${wantHook.filter((id) => !got.has(id)).length} of ${wantHook.length} missing, e.g. ${wantHook.filter((id) => !got.has(id)).slice(0, 5).join(', ')}`);
    });
    await until('the file endpoint holds every acknowledged message its route matches', () => {
      const got = new Set(fileIds(filesDir, { partial: true }).ids);
      return wantFile.every((id) => got.has(id));
    }).catch((err: unknown) => {
      const got = new Set(fileIds(filesDir, { partial: true }).ids);
      throw new Error(`${(err as Error).message}: ${wantFile.filter((id) => !got.has(id)).length} of ${wantFile.length} missing, e.g. ${wantFile.filter((id) => !got.has(id)).slice(0, 5).join(', ')}`);
    });

    // The built-in endpoint, as a user reads it: exactly what no route took (the fallback route).
    const events = monitorEvents(dataDir, { json: true, timeoutS: 3 })
      .filter((e) => DEVICES.includes(e.origin))
      .map((e) => (e.payload as { id: string }).id);
    const eventSet = new Set(events);
    assert.deepEqual(
      wantEvents.filter((id) => !eventSet.has(id)),
      [],
      'every acknowledged message no route takes is in the built-in endpoint',
    );
    assert.deepEqual(
      events.filter((id) => kindOf(parseId(id).n) !== 'none'),
      [],
      'nothing a route took is in the built-in endpoint',
    );

    // A graceful stop publishes the open chunks; a reader reads only `*.ndjson` outside `.partial/`.
    assert.equal(await hub.stop(), 0);
    const files = fileIds(filesDir, { partial: false });
    const hook = examine(receiver.ids);
    const file = examine(files.ids);
    assert.deepEqual(
      wantHook.filter((id) => !hook.unique.has(id)),
      [],
      'every acknowledged message the hot route matches reached the webhook',
    );
    const unpublished = wantFile.filter((id) => !file.unique.has(id));
    assert.equal(unpublished.length, 0, `${unpublished.length} acknowledged messages the alarm route matches are in no published file (e.g. ${unpublished.slice(0, 3).join(', ')}); left in .partial/: ${files.partials.join(', ')}`);
    assert.deepEqual(files.partials, [], 'no chunk is left unpublished in .partial/');
    assert.deepEqual(
      [...hook.unique].filter((id) => !toHook(kindOf(parseId(id).n))),
      [],
      'the webhook got only messages the hot route matches',
    );
    assert.deepEqual(
      [...file.unique].filter((id) => !toFile(kindOf(parseId(id).n))),
      [],
      'the files hold only messages the alarm route matches',
    );
    // At least once, in order per device (README: "in order per device"): first deliveries keep each device's order.
    assert.deepEqual(hook.outOfOrder, [], 'the webhook got each device in order');
    assert.deepEqual(file.outOfOrder, [], 'the files hold each device in order');
    t.diagnostic(
      `acknowledged ${devices.acked.size} (round 1: ${afterRound1}); webhook ${wantHook.length} wanted, ${receiver.ids.length} received, ${hook.duplicates} duplicates, ${receiver.refused} batches refused; ` +
        `files ${wantFile.length} wanted, ${files.ids.length} lines, ${file.duplicates} duplicates; events ${wantEvents.length} wanted, ${events.length} read`,
    );
  } finally {
    await hub.stop();
    if (process.env.ROUTING_DEBUG !== undefined) console.error(hub.output());
    await receiver.stop();
    removeDir(dataDir);
    rmSync(filesDir, { recursive: true, force: true });
  }
});
