/** Text that breaks parsers: broken percent-encoding, overlong UTF-8, separators, unicode, control bytes. */
import fc from 'fast-check';

const NASTY = [
  '%',
  '%%',
  '%Z',
  '%zz',
  '%E0%A4%A',
  '%C0%80',
  '%FF',
  '%00',
  '%25',
  '%2F',
  '%2f..%2f',
  '%uD800',
  '&',
  '=',
  '?',
  '/',
  '//',
  '#',
  '+',
  '$',
  '$rid',
  '$.ct',
  '$.ce',
  '$.mid',
  '$version',
  '\u0000',
  '\uffff',
  '\ud800',
  '😀',
  ' ',
  '..',
  '\r\n',
  "'",
  '"',
  '\\',
  '*',
  '[',
  ']',
  '(',
  ')',
  'NULL',
  '-1',
  '1e309',
  '99999999999999999999',
];

export const fuzzText: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
      { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
      { weight: 1, arbitrary: fc.constantFrom('a'.repeat(200), 'x'.repeat(129), 'b'.repeat(1025)) },
    ),
    { maxLength: 8 },
  )
  .map((parts) => parts.join(''));

/** A value for a `k=v&...` bag. */
export const fuzzBag: fc.Arbitrary<string> = fc
  .array(fc.tuple(fuzzText, fc.option(fuzzText, { nil: undefined })), { maxLength: 6 })
  .map((kv) => kv.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&'));

export const fuzzBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.json({ maxDepth: 4 }).map((j) => Buffer.from(j)),
  fuzzText.map((s) => Buffer.from(s)),
);
