/**
 * If-Match as the SDKs send it: the service SDK quotes the etag, the DPS service SDK sends the one
 * its JSON gave it as is. Whichever way, the etag the hub handed out must come back as itself, or a
 * correct update is refused with 412 (InvalidEtagError in the DPS SDK). The hub's etags are base64:
 * one in 4,096 starts with "W/", which is also how a weak tag starts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newEtag, parseIfMatch } from '../src/core/ids.js';

describe('If-Match', () => {
  it('takes back every etag the hub hands out, quoted or not, one that starts with W/ included', () => {
    for (const etag of ['W/abcdEFG=', 'W/+/+/+/w=', ...Array.from({ length: 50_000 }, () => newEtag())]) {
      assert.equal(parseIfMatch(etag), etag);
      assert.equal(parseIfMatch(`"${etag}"`), etag);
      assert.equal(parseIfMatch(` ${etag} `), etag);
    }
  });

  it('reads a weak tag, the wildcard and no header', () => {
    assert.equal(parseIfMatch('W/"abc"'), 'abc');
    assert.equal(parseIfMatch('"*"'), '*');
    assert.equal(parseIfMatch('*'), '*');
    assert.equal(parseIfMatch(undefined), undefined);
    assert.equal(parseIfMatch(''), undefined);
    assert.equal(parseIfMatch(['"first"', '"second"']), 'first');
  });
});
