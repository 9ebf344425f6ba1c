/**
 * The file endpoint's chunks on disk (file-sink.ts says how they are used):
 *
 * - A chunk being written lives in `<directory>/.partial/`, named
 *   `<hub>+<partition>+<final name, URI-encoded>+<unique>.part`, and is only ever appended to,
 *   one batch per write, fdatasync'ed before the batch counts as delivered.
 * - Rolling publishes it: a hard link at `<directory>/<final name>.ndjson` (`-1`, `-2`, ... when
 *   that name is taken: a link never replaces a file), then the partial name is removed and both
 *   directories are fsync'ed. Readers only ever see whole chunks under their final names.
 * - Recovery, before a partition's first chunk and after a failure: each partial file of that
 *   (hub, partition) is scanned line by line; it is cut at the first line that is not a whole
 *   JSON object (the batch a crash interrupted, which was never acknowledged and comes again),
 *   then published. So no reader ever meets a torn line.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const PARTIAL_DIR = '.partial';
export const EXTENSION = '.ndjson';
/** Azure's tokens, each required, as its storage endpoint requires them. */
export const FILE_NAME_TOKENS = ['{iothub}', '{partition}', '{YYYY}', '{MM}', '{DD}', '{HH}', '{mm}'] as const;

/** Why a fileNameFormat cannot be used, or undefined. */
export function fileNameFormatProblem(format: string): string | undefined {
  const missing = FILE_NAME_TOKENS.filter((t) => !format.includes(t));
  if (missing.length > 0) return `fileNameFormat lacks ${missing.join(', ')} (every token must appear, as in Azure)`;
  const unknown = (format.match(/\{[^}]*\}/g) ?? []).filter((t) => !(FILE_NAME_TOKENS as readonly string[]).includes(t));
  if (unknown.length > 0) return `fileNameFormat has unknown tokens ${unknown.join(', ')}`;
  const literal = FILE_NAME_TOKENS.reduce((s, t) => s.split(t).join('x'), format);
  if (!/^[A-Za-z0-9._\-/]+$/.test(literal)) return 'fileNameFormat may hold letters, digits, ".", "_", "-", "/" and the tokens only';
  if (literal.startsWith('/') || literal.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')) {
    return 'fileNameFormat must be a relative path without empty, "." or ".." parts';
  }
  return undefined;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** The chunk's name (without extension) under the directory: the format with the tokens filled in, in UTC. */
export function formatFileName(format: string, hub: string, partition: number, atMs: number): string {
  const d = new Date(atMs);
  const values: Record<(typeof FILE_NAME_TOKENS)[number], string> = {
    '{iothub}': hub,
    '{partition}': String(partition),
    '{YYYY}': pad(d.getUTCFullYear(), 4),
    '{MM}': pad(d.getUTCMonth() + 1),
    '{DD}': pad(d.getUTCDate()),
    '{HH}': pad(d.getUTCHours()),
    '{mm}': pad(d.getUTCMinutes()),
  };
  return FILE_NAME_TOKENS.reduce((s, t) => s.split(t).join(values[t]), format);
}

function partialPrefix(hub: string, partition: number): string {
  return `${encodeURIComponent(hub)}+${partition}+`;
}

export function partialName(hub: string, partition: number, finalName: string): string {
  return `${partialPrefix(hub, partition)}${encodeURIComponent(finalName)}+${Date.now().toString(36)}${randomBytes(4).toString('hex')}.part`;
}

/** The final name a partial file stands for. */
function finalNameOf(partial: string): string | undefined {
  const parts = partial.split('+');
  return parts.length === 4 && parts[2] !== undefined ? decodeURIComponent(parts[2]) : undefined;
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** mkdir -p, then fsync the parent of every directory it created (so the new entries survive a crash). */
export async function makeDirs(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (first === undefined) return;
  for (let d = dir; ; d = dirname(d)) {
    await fsyncDir(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
}

/** Creates a new partial file for appending. */
export async function createPartial(directory: string, name: string): Promise<{ path: string; fh: FileHandle }> {
  const dir = join(directory, PARTIAL_DIR);
  await makeDirs(dir);
  const path = join(dir, name);
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND, 0o600);
  await fsyncDir(dir);
  return { path, fh };
}

/** Gives the partial file its final name (never replacing a file) and removes the partial name. Returns the final path. */
export async function publishPartial(directory: string, partialPath: string, finalName: string): Promise<string> {
  const base = join(directory, finalName);
  await makeDirs(dirname(base));
  for (let n = 0; ; n++) {
    const target = `${base}${n === 0 ? '' : `-${n}`}${EXTENSION}`;
    try {
      await link(partialPath, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && n < 10_000) continue;
      throw err;
    }
    await fsyncDir(dirname(target));
    await unlink(partialPath);
    await fsyncDir(dirname(partialPath));
    return target;
  }
}

/** Bytes of the file's prefix made of whole lines that are JSON objects. */
export async function validPrefixLength(fh: FileHandle): Promise<number> {
  const block = Buffer.alloc(1 << 20);
  let pos = 0;
  let good = 0;
  let carry = Buffer.alloc(0);
  for (;;) {
    const { bytesRead } = await fh.read(block, 0, block.length, pos);
    if (bytesRead === 0) return good;
    pos += bytesRead;
    let data = carry.length > 0 ? Buffer.concat([carry, block.subarray(0, bytesRead)]) : block.subarray(0, bytesRead);
    for (;;) {
      const nl = data.indexOf(0x0a);
      if (nl < 0) break;
      if (!isJsonObjectLine(data.subarray(0, nl))) return good;
      good += nl + 1;
      data = data.subarray(nl + 1);
    }
    carry = Buffer.from(data);
  }
}

function isJsonObjectLine(line: Buffer): boolean {
  if (line.length === 0 || line[0] !== 0x7b) return false;
  try {
    const v: unknown = JSON.parse(line.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
}

/**
 * Cuts every partial file of (hub, partition) after its last whole line and publishes it (an
 * empty one is removed). Returns the final paths.
 */
export async function recoverPartials(directory: string, hub: string, partition: number): Promise<string[]> {
  const dir = join(directory, PARTIAL_DIR);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const name of names.filter((n) => n.startsWith(partialPrefix(hub, partition)) && n.endsWith('.part')).sort()) {
    const path = join(dir, name);
    const finalName = finalNameOf(name);
    if (finalName === undefined) continue;
    const fh = await open(path, constants.O_RDWR);
    let length: number;
    try {
      length = await validPrefixLength(fh);
      if (length < (await fh.stat()).size) {
        await fh.truncate(length);
        await fh.sync();
      }
    } finally {
      await fh.close();
    }
    if (length === 0) {
      await unlink(path);
      await fsyncDir(dir);
      continue;
    }
    out.push(await publishPartial(directory, path, finalName));
  }
  return out;
}

/**
 * Whether the open file is still the one at `path`: a chunk whose file (or a directory above it)
 * was removed or moved away would take writes that no reader will find.
 */
export async function stillAt(fh: FileHandle, path: string): Promise<boolean> {
  const [open, named] = await Promise.all([fh.stat(), stat(path).catch(() => undefined)]);
  return named !== undefined && open.nlink > 0 && open.ino === named.ino && open.dev === named.dev;
}
