import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const MASTER_KEY_FILE = 'master.key';

/**
 * The key every secret at rest is sealed under. From GATEHOUSE_MASTER_KEY (base64 or hex of 32
 * bytes) when set, else `<dataDir>/master.key`, created on first start with mode 0600.
 * Returns where it came from, for the log (never the key).
 */
export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): { key: Buffer; source: string; warning?: string } {
  const fromEnv = env.GATEHOUSE_MASTER_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    return { key: decodeKey(fromEnv.trim(), 'GATEHOUSE_MASTER_KEY'), source: 'GATEHOUSE_MASTER_KEY' };
  }
  const file = join(dataDir, MASTER_KEY_FILE);
  if (!existsSync(file)) {
    const key = randomBytes(32);
    writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    return { key, source: file };
  }
  const mode = statSync(file).mode & 0o777;
  const key = decodeKey(readFileSync(file, 'utf8').trim(), file);
  const warning = (mode & 0o077) !== 0 ? `${file} is readable by other users (mode ${mode.toString(8)}); chmod 600 it` : undefined;
  return warning === undefined ? { key, source: file } : { key, source: file, warning };
}

function decodeKey(text: string, where: string): Buffer {
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (key.length !== 32) throw new Error(`${where} must hold 32 bytes as base64 or hex`);
  return key;
}
