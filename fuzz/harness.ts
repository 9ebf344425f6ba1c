/**
 * The campaign: workers per protocol send fuzz inputs to one hub while a monitor asks /health
 * every half second (a hang: no answer within 2 s) and reads the process's VmRSS; the hub's exit
 * is a crash. Inputs in flight when the hub crashed or hung are saved to the corpus, as are HTTP
 * requests answered 500 (a bad request gets a precise 4xx). At the end: per protocol the inputs
 * sent, crashes, hangs, and RSS at the start, at the peak and after the load stopped and settled.
 */
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { deviceToken } from '../test/support/raw-mqtt.js';
import { connectPacket } from '../test/support/mqtt-packets.js';
import { amqpInputs, recordDeviceSession, recordServiceSession, type AmqpRecording } from './amqp-inputs.js';
import { fuzzDevice, healthCheck, type FuzzHub } from './hub.js';
import { httpInputs, httpSeeds, queryInputs } from './http-inputs.js';
import { saveToCorpus, type FuzzInput, type Protocol } from './input.js';
import { mqttInputs } from './mqtt-inputs.js';
import { httpStatus, prefixChunks, sendTls, sendWs, type Endpoint, type Outcome, type PrefixChunk } from './transport.js';

export const HEALTH_LIMIT_MS = 2000;
/** RSS growth between two health checks (half a second apart) that saves the inputs in flight. */
const MEMORY_JUMP_BYTES = 150 * 1048576;

export interface Addresses {
  /** The /health monitor's source address. */
  health: string;
  /** Inputs before authentication. */
  pre: string;
  /** Inputs after authentication (a real credential first). */
  post: string;
}

export interface ProtocolStats {
  inputs: number;
  preAuth: number;
  postAuth: number;
  /** Post-authentication inputs whose credential the hub accepted (CONNACK 0, put-token 200, an HTTP answer other than 401). */
  authenticated: number;
  closedByHub: number;
  crashes: number;
  hangs: number;
  /** HTTP answers 500 and up (503 aside). */
  serverErrors: number;
  saved: string[];
}

export interface CampaignReport {
  durationMs: number;
  protocols: Record<string, ProtocolStats>;
  crashed?: string;
  /** What was in flight or just sent when the hub ended: one of these crashed it (triage replays them one by one). */
  crashSuspects: FuzzInput[];
  hangs: number;
  healthChecks: number;
  worstHealthMs: number;
  rss: { start: number; peak: number; after: number };
  /** V8 heap used at the start and after the settle (what the process holds on to, against what it has not given back). */
  heapUsed: { start: number; after: number };
  hubErrors: Array<[string, number]>;
}

/** Everything an input needs to be sent to this hub: prefixes that authenticate, per protocol. */
export class Sender {
  #amqp = new Map<string, Promise<AmqpRecording>>();
  constructor(
    readonly hub: FuzzHub,
    readonly addresses: Addresses,
  ) {}

  recording(protocol: 'amqp' | 'amqp-ws', auth: 'device' | 'service'): Promise<AmqpRecording> {
    const key = `${protocol}/${auth}`;
    let r = this.#amqp.get(key);
    if (r === undefined) {
      const device = fuzzDevice(protocol);
      const { hub } = this;
      r = hub.deviceKey(device).then((k) =>
        auth === 'device' ? recordDeviceSession(hub.address, hub.ca, device, k, this.addresses.post) : recordServiceSession(hub.address, hub.ca, hub.ownerKey, device, this.addresses.post),
      );
      this.#amqp.set(key, r);
    }
    return r;
  }

  async #authorization(input: FuzzInput): Promise<string | undefined> {
    const { hub } = this;
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    if (input.auth === 'service') return generateSasToken({ resource: hub.address, key: hub.ownerKey, keyName: 'iothubowner', expiry });
    if (input.auth === 'device') {
      const id = fuzzDevice(input.protocol === 'query' ? 'http' : input.protocol);
      return generateSasToken({ resource: `${hub.address}/devices/${id}`, key: await hub.deviceKey(id), expiry });
    }
    return undefined;
  }

  /** Sends one input; the hub's answer. */
  async send(input: FuzzInput): Promise<Outcome & { authenticated: boolean }> {
    const ep: Endpoint = { host: this.hub.address, ca: this.hub.ca, localAddress: input.auth === 'none' ? this.addresses.pre : this.addresses.post };
    switch (input.protocol) {
      case 'mqtt':
      case 'mqtt-ws': {
        let prefix: PrefixChunk[] = [];
        if (input.auth !== 'none') {
          const id = fuzzDevice(input.protocol);
          prefix = prefixChunks([mqttPacket.generate(connectPacket(this.hub.address, id, deviceToken(this.hub.address, id, await this.hub.deviceKey(id))))]);
        }
        const out = input.protocol === 'mqtt' ? await sendTls(ep, 8883, prefix, input.chunks, 400) : await sendWs(ep, 'mqtt', prefix, input.chunks, 400);
        // CONNACK, return code 0 (session present or not).
        return { ...out, authenticated: input.auth !== 'none' && out.head[0] === 0x20 && out.head[1] === 0x02 && out.head[3] === 0x00 };
      }
      case 'amqp':
      case 'amqp-ws': {
        const prefix = input.auth === 'none' ? [] : (await this.recording(input.protocol, input.auth === 'service' ? 'service' : 'device')).prefix;
        const pause = input.auth === 'none' ? 0 : 150;
        const out = input.protocol === 'amqp' ? await sendTls(ep, 5671, prefix, input.chunks, 400, pause) : await sendWs(ep, 'AMQPWSB10', prefix, input.chunks, 400, pause);
        return { ...out, authenticated: input.auth !== 'none' && putTokenAccepted(out.head) };
      }
      case 'http':
      case 'query': {
        const auth = await this.#authorization(input);
        const chunks = [...input.chunks];
        if (auth !== undefined && chunks[0] !== undefined) {
          const head = chunks[0];
          const eol = head.indexOf('\r\n');
          chunks[0] = eol < 0 ? head : Buffer.concat([head.subarray(0, eol + 2), Buffer.from(`Authorization: ${auth}\r\n`, 'latin1'), head.subarray(eol + 2)]);
        }
        const out = await sendTls(ep, 443, [], chunks, 2000);
        const status = httpStatus(out.head);
        return { ...out, authenticated: input.auth !== 'none' && status !== undefined && status !== 401 };
      }
    }
  }
}

const STATUS_CODE = Buffer.from('status-code');
/** The CBS put-token answer's application property status-code 200: an AMQP (small) uint or int (0x52, 0x54, 0x70, 0x71). */
function putTokenAccepted(head: Buffer): boolean {
  const at = head.indexOf(STATUS_CODE);
  if (at < 0) return false;
  const v = head.subarray(at + STATUS_CODE.length, at + STATUS_CODE.length + 5);
  if (v[0] === 0x52 || v[0] === 0x54) return v[1] === 200;
  return (v[0] === 0x70 || v[0] === 0x71) && v.length === 5 && v.readUInt32BE(1) === 200;
}

export type Generators = Record<Protocol, { pre: fc.Arbitrary<FuzzInput>; post: fc.Arbitrary<FuzzInput> }>;

export async function buildGenerators(sender: Sender, protocols: readonly Protocol[]): Promise<Partial<Generators>> {
  const { hub } = sender;
  const out: Partial<Generators> = {};
  for (const p of protocols) {
    switch (p) {
      case 'mqtt':
      case 'mqtt-ws':
        out[p] = mqttInputs(p, hub.address, hub.idScope, fuzzDevice(p));
        break;
      case 'amqp':
      case 'amqp-ws':
        out[p] = amqpInputs(p, await sender.recording(p, 'device'), await sender.recording(p, 'service'));
        break;
      case 'http': {
        await hub.deviceKey(fuzzDevice('http'));
        const arb = httpInputs(hub.idScope, await httpSeeds(hub.idScope, fuzzDevice('http')));
        out[p] = { pre: arb, post: arb };
        break;
      }
      case 'query':
        out[p] = { pre: queryInputs(), post: queryInputs() };
        break;
    }
  }
  return out;
}

/** Draws inputs from an arbitrary in batches, reproducibly from `seed`. */
function stream(arb: fc.Arbitrary<FuzzInput>, seed: number): () => FuzzInput {
  let batch: FuzzInput[] = [];
  let n = 0;
  return () => {
    if (batch.length === 0) batch = fc.sample(arb, { numRuns: 25, seed: seed + n++ }).reverse();
    return batch.pop()!;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CampaignOptions {
  sender: Sender;
  generators: Partial<Generators>;
  durationMs: number;
  /** How long to watch after the load stops before the final RSS reading. */
  settleMs: number;
  seed: number;
  /** Where hanging inputs and HTTP 500s go (test/fuzz-corpus); undefined: nowhere. Crash suspects are returned for triage. */
  corpusDir?: string;
  log?: (line: string) => void;
}

export async function runCampaign(opts: CampaignOptions): Promise<CampaignReport> {
  const { sender, generators } = opts;
  const hub = sender.hub;
  const log = opts.log ?? (() => undefined);
  const protocols = Object.keys(generators) as Protocol[];
  const stats: Record<string, ProtocolStats> = {};
  for (const p of protocols) stats[p] = { inputs: 0, preAuth: 0, postAuth: 0, authenticated: 0, closedByHub: 0, crashes: 0, hangs: 0, serverErrors: 0, saved: [] };
  const inFlight = new Set<FuzzInput>();
  const recent: FuzzInput[] = [];
  const save = (input: FuzzInput, finding: string) => {
    const s = stats[input.protocol]!;
    if (opts.corpusDir === undefined || s.saved.length >= 50) return;
    const path = saveToCorpus(opts.corpusDir, input, finding);
    if (!s.saved.includes(path)) s.saved.push(path);
    log(`saved ${finding}: ${path} (${input.kind})`);
  };

  const startRss = hub.rssBytes() ?? 0;
  const startHeap = (await hub.heap())?.used ?? NaN;
  let peakRss = startRss;
  let worst = 0;
  let checks = 0;
  let hangs = 0;
  let crashed: string | undefined;
  const t0 = Date.now();
  const deadline = t0 + opts.durationMs;
  let loadRunning = true;

  let over = false;
  const suspects = new Set<FuzzInput>();
  void hub.exited.then((why) => {
    if (over) return;
    crashed = why;
    log(`hub ended: ${why}; its last words:\n${hub.tail().slice(-3000)}`);
    for (const i of new Set([...inFlight, ...recent.slice(-2 * protocols.length)])) suspects.add(i);
    for (const p of new Set([...suspects].map((i) => i.protocol))) stats[p]!.crashes += 1;
  });

  let lastMemoryLog = Date.now();
  let lastRss = startRss;
  const monitor = (async () => {
    while (crashed === undefined && (loadRunning || Date.now() < deadline + opts.settleMs)) {
      const h = await healthCheck(hub, HEALTH_LIMIT_MS, sender.addresses.health);
      if (crashed !== undefined) break;
      checks++;
      worst = Math.max(worst, h.ms);
      const rss = hub.rssBytes() ?? 0;
      peakRss = Math.max(peakRss, rss);
      // A jump of RSS between two checks: what was in flight made the hub take that memory.
      if (rss - lastRss > MEMORY_JUMP_BYTES) {
        log(`memory: RSS ${mb(lastRss)} -> ${mb(rss)} in one check`);
        for (const i of inFlight) save(i, `memory (RSS +${mb(rss - lastRss)} between two checks)`);
      }
      lastRss = rss;
      if (loadRunning && Date.now() - lastMemoryLog > 30_000) {
        lastMemoryLog = Date.now();
        log(`RSS ${mb(rss)}; inputs so far ${Object.values(stats).reduce((n, s) => n + s.inputs, 0)}`);
      }
      if (h.status !== 200) {
        hangs++;
        log(`health: ${String(h.status)} after ${h.ms.toFixed(0)} ms`);
        const protos = new Set([...inFlight].map((i) => i.protocol));
        for (const p of protos) stats[p]!.hangs += 1;
        for (const i of inFlight) save(i, `hang (health ${String(h.status)} after ${h.ms.toFixed(0)} ms)`);
      }
      if (!loadRunning && Date.now() - lastMemoryLog > 10_000) {
        lastMemoryLog = Date.now();
        const heap = await hub.heap();
        log(`settling: RSS ${mb(hub.rssBytes() ?? 0)}, heap used ${mb(heap?.used ?? 0)} of ${mb(heap?.total ?? 0)}, external ${mb(heap?.external ?? 0)}`);
      }
      await sleep(500);
    }
  })();

  const worker = async (protocol: Protocol, which: 'pre' | 'post', seed: number) => {
    const next = stream(generators[protocol]![which], seed);
    while (Date.now() < deadline && crashed === undefined) {
      const input = next();
      const s = stats[protocol]!;
      inFlight.add(input);
      let out;
      try {
        out = await sender.send(input);
      } catch (err) {
        log(`${protocol}: send failed: ${(err as Error).message}`);
        await sleep(200);
        continue;
      } finally {
        inFlight.delete(input);
        recent.push(input);
        if (recent.length > 64) recent.shift();
      }
      s.inputs++;
      if (input.auth === 'none') s.preAuth++;
      else s.postAuth++;
      if (out.authenticated) s.authenticated++;
      if (out.closedByHub) s.closedByHub++;
      if (input.protocol === 'http' || input.protocol === 'query') {
        const status = httpStatus(out.head);
        if (status !== undefined && status >= 500 && status !== 503) {
          s.serverErrors++;
          save(input, `http ${status}`);
        }
      }
    }
  };
  const workers: Array<Promise<void>> = [];
  protocols.forEach((p, i) => {
    // HTTP inputs wait longer (a request whose Content-Length lies waits for the hub's body timeout).
    const pairs = p === 'http' ? 3 : 1;
    for (let k = 0; k < pairs; k++) workers.push(worker(p, 'pre', opts.seed + i * 1_000_003 + k * 100_003), worker(p, 'post', opts.seed + i * 1_000_003 + 500_001 + k * 100_003));
  });
  await Promise.all(workers);
  loadRunning = false;
  const loadMs = Date.now() - t0;
  log(`load stopped after ${(loadMs / 1000).toFixed(0)} s; settling ${(opts.settleMs / 1000).toFixed(0)} s`);
  await monitor;
  const after = hub.rssBytes() ?? 0;
  const afterHeap = crashed === undefined ? ((await hub.heap())?.used ?? NaN) : NaN;
  over = true;
  return {
    durationMs: loadMs,
    protocols: stats,
    ...(crashed === undefined ? {} : { crashed }),
    crashSuspects: [...suspects],
    hangs,
    healthChecks: checks,
    worstHealthMs: worst,
    rss: { start: startRss, peak: peakRss, after },
    heapUsed: { start: startHeap, after: afterHeap },
    hubErrors: [...hub.errors.entries()].sort((a, b) => b[1] - a[1]),
  };
}

const mb = (b: number) => `${(b / 1048576).toFixed(0)} MB`;

export function formatReport(r: CampaignReport): string {
  const lines = [
    `| protocol | inputs | pre-auth | post-auth (accepted) | closed by hub | crashes | hangs | HTTP 5xx |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|`,
    ...Object.entries(r.protocols).map(([p, s]) => `| ${p} | ${s.inputs} | ${s.preAuth} | ${s.postAuth} (${s.authenticated}) | ${s.closedByHub} | ${s.crashes} | ${s.hangs} | ${s.serverErrors} |`),
    '',
    `load ${(r.durationMs / 1000).toFixed(0)} s; health checks ${r.healthChecks}, worst ${r.worstHealthMs.toFixed(0)} ms, hangs ${r.hangs}; hub ${r.crashed === undefined ? 'alive' : `ended (${r.crashed})`}`,
    `RSS start ${mb(r.rss.start)}, peak ${mb(r.rss.peak)}, after ${mb(r.rss.after)} (${r.rss.start === 0 ? '?' : `${(((r.rss.after - r.rss.start) / r.rss.start) * 100).toFixed(0)}%`} from start); V8 heap used start ${mb(r.heapUsed.start)}, after ${mb(r.heapUsed.after)}`,
  ];
  if (r.hubErrors.length > 0) lines.push('hub error-level log lines:', ...r.hubErrors.slice(0, 15).map(([m, n]) => `  ${n}× ${m}`));
  return lines.join('\n');
}
