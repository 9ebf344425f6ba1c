/**
 * Which partition a device's messages land in: the partition Event Hubs itself picks for an event
 * sent with the device id as its partition key, so a hub and its back ends agree with Azure on
 * "device X is in partition N" for the same partition count.
 *
 * Event Hubs hashes the key's UTF-8 bytes with Bob Jenkins' lookup3 `hashlittle2` (public domain,
 * http://burtleburtle.net/bob/c/lookup3.c), seeds 0 and 0, folds the two 32-bit results into a
 * signed 16-bit value (`(short)(c ^ b)`) and takes its absolute remainder by the partition count
 * (the Azure SDKs' PartitionResolver documents this as the service's algorithm; the unit test checks
 * the SDK's published hash values). The mapping depends only on the id and the count, so it is
 * stable across restarts, nodes and backends; changing a hub's partition count would move devices,
 * which is why the count is fixed when the hub is created.
 */

const rot = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

/**
 * Where a key's UTF-8 bytes are written, followed by 12 zero bytes (the last block's padding): one
 * buffer for every call, not two new ones (this runs for every device message). Keys longer than it
 * (device ids are at most 128 characters, 512 bytes) get a buffer of their own.
 */
const scratch = Buffer.alloc(1024 + 12);

/** lookup3 hashlittle2 over `data` with seeds 0/0, folded to a signed 16-bit value. */
export function partitionKeyHash(key: string): number {
  const size = Buffer.byteLength(key, 'utf8');
  const data = size + 12 <= scratch.length ? scratch : Buffer.alloc(size + 12);
  data.write(key, 0, 'utf8');
  data.fill(0, size, size + 12);
  let a = (0xdeadbeef + size) >>> 0;
  let b = a;
  let c = a;
  let i = 0;
  let left = size;
  // mix() over every 12-byte block but the last (which may be a full 12 bytes).
  while (left > 12) {
    a = (a + data.readUInt32LE(i)) >>> 0;
    b = (b + data.readUInt32LE(i + 4)) >>> 0;
    c = (c + data.readUInt32LE(i + 8)) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rot(c, 4)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rot(a, 6)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rot(b, 8)) >>> 0; b = (b + a) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rot(c, 16)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rot(a, 19)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rot(b, 4)) >>> 0; b = (b + a) >>> 0;
    left -= 12;
    i += 12;
  }
  if (left > 0) {
    // The last 1-12 bytes, little-endian, zero-padded: what lookup3's switch adds byte by byte.
    a = (a + data.readUInt32LE(i)) >>> 0;
    b = (b + data.readUInt32LE(i + 4)) >>> 0;
    c = (c + data.readUInt32LE(i + 8)) >>> 0;
    // final()
    c = (c ^ b) >>> 0; c = (c - rot(b, 14)) >>> 0;
    a = (a ^ c) >>> 0; a = (a - rot(c, 11)) >>> 0;
    b = (b ^ a) >>> 0; b = (b - rot(a, 25)) >>> 0;
    c = (c ^ b) >>> 0; c = (c - rot(b, 16)) >>> 0;
    a = (a ^ c) >>> 0; a = (a - rot(c, 4)) >>> 0;
    b = (b ^ a) >>> 0; b = (b - rot(a, 14)) >>> 0;
    c = (c ^ b) >>> 0; c = (c - rot(b, 24)) >>> 0;
  }
  // (short)(c ^ b): the low 16 bits, sign-extended.
  return ((c ^ b) << 16) >> 16;
}

/** The partition (0 .. partitionCount-1) of a device id. */
export function partitionOf(deviceId: string, partitionCount: number): number {
  return Math.abs(partitionKeyHash(deviceId) % partitionCount);
}
