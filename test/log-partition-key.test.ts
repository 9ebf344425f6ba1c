/**
 * A device's partition is the one Event Hubs picks for the device id as a partition key: the hash
 * values below are the ones the Azure SDKs' PartitionResolver tests pin for the service's
 * algorithm (lookup3 over UTF-8, folded to 16 bits).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { partitionKeyHash, partitionOf } from '../src/log/partition-key.js';

describe('partition of a device id', () => {
  it('hashes keys to the values Event Hubs computes', () => {
    const known: Array<[string, number]> = [
      ['7', -15263],
      ['131', 30562],
      ['7149583486996073602', 12977],
      ['FWfAT', -22341],
      ['sOdeEAsyQoEuEFPGerWO', -6503],
      ['FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs', 5226],
      ['!c*_!I@1^c', 15372],
      ['p4*!jioeO/z-!-;w:dh', -3104],
      ['$0cb', 26269],
      ['-4189260826195535198', 453],
    ];
    for (const [key, hash] of known) assert.equal(partitionKeyHash(key), hash, key);
  });

  it('a key hashes the same whatever was hashed before it, at every length of the last block', () => {
    const keys = [...Array.from({ length: 40 }, (_, n) => 'k'.repeat(n)), 'dévice-ü-日本', 'é'.repeat(600), 'x'.repeat(1013), 'x'.repeat(1024), 'x'.repeat(3000)];
    const first = keys.map((k) => partitionKeyHash(k));
    for (const [i, k] of keys.entries()) {
      partitionKeyHash('\uffff'.repeat(300)); // a longer key's bytes (900) left behind must not count
      assert.equal(partitionKeyHash(k), first[i], `length ${k.length}`);
    }
  });

  it('maps the hash into 0..count-1 by its absolute remainder', () => {
    assert.equal(partitionOf('7', 4), 3, '-15263 % 4 = -3');
    assert.equal(partitionOf('131', 4), 2);
    assert.equal(partitionOf('131', 1), 0);
    for (let n = 1; n <= 32; n++) for (let i = 0; i < 50; i++) {
      const p = partitionOf(`device-${i}`, n);
      assert.ok(Number.isInteger(p) && p >= 0 && p < n);
    }
  });

  it('spreads many devices over every partition', () => {
    const counts = new Array<number>(32).fill(0);
    for (let i = 0; i < 32_000; i++) counts[partitionOf(`sensor-${i}`, 32)]! += 1;
    assert.ok(Math.min(...counts) > 700 && Math.max(...counts) < 1300, `per partition: ${counts.join(',')}`);
  });
});
