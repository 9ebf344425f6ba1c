/**
 * The device's label: what the factory prints on the case and writes into the device once, at
 * manufacture. The serial names the device; the setup password and the application key are for
 * people (the setup page, and local activation in web-server mode); the device secret never
 * leaves the device and keys the encryption of its stored settings.
 */
import { createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic-file.js';

export interface DeviceLabel {
  serial: string;
  /** Protects the setup page. */
  setupPassword: string;
  /** Authorizes local activation in web-server mode. */
  applicationKey: string;
  /** 32 random bytes, base64; the root of the device-unique storage key. */
  deviceSecret: string;
}

function code(bytes: number): string {
  // Readable on a sticker: no 0/O, 1/l/I.
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  return [...randomBytes(bytes)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** A new label for a device at manufacture. */
export function newLabel(serial: string): DeviceLabel {
  return { serial, setupPassword: code(12), applicationKey: code(20), deviceSecret: randomBytes(32).toString('base64') };
}

export function writeLabel(file: string, label: DeviceLabel): void {
  writeFileAtomic(file, `${JSON.stringify(label, null, 2)}\n`, 0o600);
}

export function readLabel(file: string): DeviceLabel {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<DeviceLabel>;
  for (const k of ['serial', 'setupPassword', 'applicationKey', 'deviceSecret'] as const) {
    if (typeof raw[k] !== 'string' || raw[k] === '') throw new Error(`the device label ${file} has no ${k}`);
  }
  if (Buffer.from(raw.deviceSecret ?? '', 'base64').length !== 32) throw new Error(`the device label ${file} has a device secret that is not 32 bytes`);
  return raw as DeviceLabel;
}

/** The key that seals this device's stored secrets (HKDF-SHA256 of the device secret). */
export function storageKey(label: DeviceLabel): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(label.deviceSecret, 'base64'), Buffer.from(label.serial), 'gatehouse gate-controller config v1', 32));
}

/** Constant-time comparison of a presented secret with the label's. */
export function secretMatches(presented: string | undefined, expected: string): boolean {
  const a = createHash('sha256').update(presented ?? '').digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && presented !== undefined;
}
