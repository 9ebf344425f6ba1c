/**
 * The main thread's side of the SQLite log's writer thread (log-worker.ts): hands it batches and
 * settles them from its answers, many per message. Bodies are copied once, into one buffer per
 * batch that is transferred to the thread (a body is usually a slice of a socket's read buffer,
 * which must not be detached).
 *
 * A writer that dies (an uncaught error, out of memory) fails what it had not answered with
 * ServiceUnavailable: nothing it had not answered was acknowledged, and what it committed without
 * answering is at most repeated by the devices' retries. The next request starts a new thread,
 * which opens the file as SQLite left it (a commit is all or nothing).
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { HubError } from '../../core/errors.js';
import { systemPropertiesText, type LogMessage } from '../log-ports.js';
import { STRS_PER_MESSAGE, type Outcome, type WorkerConfig, type WorkerReply, type WorkerRequest, type WriterEvent } from './log-worker-protocol.js';

export interface LogWorkerOptions {
  file: string;
  /** fdatasync before answering (--telemetry-durability fsync); false: os-cache. */
  sync: boolean;
  /** Sees each commit and sync of the writer, in order, before the answers they made durable. */
  observe?: (event: WriterEvent) => void;
  /** The writer thread stopped unasked (its pending requests failed). */
  onFailure?: (err: Error) => void;
  /** Each new writer thread (tests stop one to see the log survive it). */
  onStart?: (worker: Worker) => void;
}

interface Waiting {
  resolve(o: Outcome): void;
  reject(err: unknown): void;
}

interface Running {
  worker: Worker;
  port: MessagePort;
  exited: Promise<void>;
}

/** An idle writer does not keep the process alive; one with requests out does. */
function ref(r: Running, on: boolean): void {
  if (on) {
    r.worker.ref();
    r.port.ref();
  } else {
    r.worker.unref();
    r.port.unref();
  }
}

export class LogWorkerClient {
  readonly #pending = new Map<number, Waiting>();
  #nextId = 1;
  #running: Running | undefined;
  #closing = false;

  constructor(private readonly opts: LogWorkerOptions) {}

  /** The placements, three numbers per message (log-worker-protocol.ts). */
  async append(messages: readonly LogMessage[], parts: readonly number[], now: number): Promise<Float64Array> {
    const n = messages.length;
    const strs: (string | null)[] = new Array<string | null>(n * STRS_PER_MESSAGE);
    const ends = new Uint32Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const m = messages[i] as LogMessage;
      const s = i * STRS_PER_MESSAGE;
      strs[s] = m.deviceId;
      strs[s + 1] = m.moduleId ?? '';
      strs[s + 2] = JSON.stringify(m.properties);
      strs[s + 3] = systemPropertiesText(m);
      strs[s + 4] = m.endpoints === undefined ? null : JSON.stringify(m.endpoints);
      total += m.body.length;
      ends[i] = total;
    }
    const bodies = Buffer.allocUnsafeSlow(total);
    for (let i = 0, at = 0; i < n; i++) at += (messages[i] as LogMessage).body.copy(bodies, at);
    const id = this.#nextId++;
    const outcome = await this.#request({ t: 'append', id, now, parts: Uint8Array.from(parts), strs, ends, bodies: bodies.buffer as ArrayBuffer }, [bodies.buffer as ArrayBuffer]);
    return outcome.placed as Float64Array;
  }

  async deleteRange(part: number, from: number, to: number): Promise<number> {
    const outcome = await this.#request({ t: 'delete', id: this.#nextId++, part, from, to });
    return outcome.deleted ?? 0;
  }

  /** Waits for what was sent, then stops the thread (it closes its connection). */
  async close(): Promise<void> {
    this.#closing = true;
    const r = this.#running;
    if (r === undefined) return;
    r.port.postMessage({ t: 'close' } satisfies WorkerRequest);
    ref(r, true);
    await r.exited;
  }

  #request(req: Exclude<WorkerRequest, { t: 'close' }>, transfer: ArrayBuffer[] = []): Promise<Outcome> {
    if (this.#closing) return Promise.reject(new HubError('ServiceUnavailable', 'The event log is closed.'));
    const r = (this.#running ??= this.#start());
    return new Promise<Outcome>((resolve, reject) => {
      if (this.#pending.size === 0) ref(r, true);
      this.#pending.set(req.id, { resolve, reject });
      r.port.postMessage(req, transfer);
    });
  }

  #start(): Running {
    const { port1, port2 } = new MessageChannel();
    const config: WorkerConfig = { file: this.opts.file, sync: this.opts.sync, observe: this.opts.observe !== undefined };
    const worker = new Worker(new URL('./log-worker.js', import.meta.url), { workerData: { config, port: port2 }, transferList: [port2] });
    let failure: Error | undefined;
    const running: Running = {
      worker,
      port: port1,
      exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())),
    };
    port1.on('message', (reply: WorkerReply) => this.#answer(running, reply));
    worker.on('error', (err) => (failure = err));
    worker.once('exit', (code) => {
      port1.close();
      if (this.#running === running) this.#running = undefined;
      if (this.#pending.size === 0 && (this.#closing || code === 0)) return;
      const err = new HubError('ServiceUnavailable', 'The event log writer stopped; the message was not stored.', { cause: failure ?? new Error(`the log writer thread exited with code ${code}`) });
      const waiting = [...this.#pending.values()];
      this.#pending.clear();
      for (const w of waiting) w.reject(err);
      this.opts.onFailure?.(failure ?? err);
    });
    ref(running, false);
    this.opts.onStart?.(worker);
    return running;
  }

  #answer(running: Running, reply: WorkerReply): void {
    if (reply.t === 'observed') {
      this.opts.observe?.(reply.event);
      return;
    }
    if (reply.t !== 'done') return;
    for (const o of reply.outcomes) {
      const w = this.#pending.get(o.id);
      if (w === undefined) continue;
      this.#pending.delete(o.id);
      if (o.error === undefined) w.resolve(o);
      else w.reject(Object.assign(new Error(o.error.message), o.error.code === undefined ? {} : { code: o.error.code }));
    }
    if (this.#pending.size === 0 && !this.#closing) ref(running, false);
  }
}
