/**
 * A log record as a JetStream message payload: a 4-byte big-endian length, that many bytes of JSON
 * (device and module id, properties, system properties, enqueued time), then the body as is.
 * Properties go in the JSON rather than in NATS headers: header names are ASCII tokens, and
 * application property names are any string (the conformance suite sends 'ünï code').
 */
import { systemPropertiesText, type LogMessage } from '../log-ports.js';

interface Meta {
  d: string;
  m: string | null;
  p: Record<string, string>;
  s: Record<string, string>;
  /** Enqueued time, ms since the epoch. */
  t: number;
  /** The endpoints the record is routed to; absent before routing existed. */
  e?: string[];
}

/**
 * The header is the text JSON.stringify gives a Meta (same keys, same order), written straight
 * into the payload; the system properties come as the producer serialized them when it did
 * (`systemJson`: a connection's fixed stamps are text made once), as the SQL log stores them.
 */
export function encodeRecord(m: LogMessage, enqueuedMs: number): Uint8Array {
  const system = systemPropertiesText(m);
  const endpoints = m.endpoints === undefined ? '' : `,"e":${JSON.stringify(m.endpoints)}`;
  const json = `{"d":${JSON.stringify(m.deviceId)},"m":${JSON.stringify(m.moduleId)},"p":${JSON.stringify(m.properties)},"s":${system},"t":${JSON.stringify(enqueuedMs)}${endpoints}}`;
  const n = Buffer.byteLength(json);
  const out = Buffer.allocUnsafe(4 + n + m.body.length);
  out.writeUInt32BE(n, 0);
  out.write(json, 4);
  m.body.copy(out, 4 + n);
  return out;
}

export function decodeRecord(data: Uint8Array): LogMessage & { enqueuedMs: number } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < 4) throw new Error('log record too short');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new Error('log record header overruns the payload');
  const meta = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as Meta;
  return {
    deviceId: meta.d,
    moduleId: meta.m,
    properties: meta.p,
    systemProperties: meta.s,
    // A copy: the payload buffer belongs to the NATS client.
    body: Buffer.from(buf.subarray(4 + n)),
    enqueuedMs: meta.t,
    ...(Array.isArray(meta.e) ? { endpoints: meta.e } : {}),
  };
}

/** Only the enqueued time, for the binary search of a time position. */
export function decodeEnqueuedMs(data: Uint8Array): number {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const n = buf.readUInt32BE(0);
  return (JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as Meta).t;
}
