/**
 * MQTT inputs (TLS and WebSocket alike): real sessions made with mqtt-packet, as the device SDK
 * sends them (wire doc §3), mutated; and packets fast-check builds from fuzzy topics, property
 * bags, usernames, client ids and payloads. Before authentication the whole session is the input
 * (CONNECT included); after it, the harness sends a real CONNECT first and the input follows.
 */
import fc from 'fast-check';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { applyMutations, mutationOps } from './mutate.js';
import type { FuzzInput, Protocol } from './input.js';
import { fuzzBag, fuzzBytes, fuzzText } from './text.js';
import { mqttConnect } from '../test/support/mqtt-packets.js';

const gen = (p: Packet): Buffer => {
  try {
    return mqttPacket.generate(p);
  } catch {
    // mqtt-packet refuses what it cannot encode (a QoS or packet id out of range): send a PUBLISH
    // with an empty topic instead, itself malformed [MQTT-4.7.3-1].
    return Buffer.from([0x30, 0x02, 0x00, 0x00]);
  }
};

const pub = (topic: string, payload: Buffer | string, qos: 0 | 1 | 2 = 0, messageId?: number): Packet => ({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(qos > 0 ? { messageId: messageId ?? 1 } : {}) });

/** What a device does after its CONNECT (wire doc §3.2-§3.7). */
export function postAuthSeeds(deviceId: string): Buffer[][] {
  const d = deviceId;
  return [
    [
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] },
      pub('$iothub/twin/GET/?$rid=1', ''),
      pub('$iothub/twin/PATCH/properties/reported/?$rid=2', '{"temperature":21.5,"fw":{"v":"1.2"}}'),
      { cmd: 'pingreq' },
      { cmd: 'disconnect' },
    ],
    [
      pub(`devices/${d}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&%24.mid=m-1&alert=true`, '{"t":22}', 1, 7),
      pub(`devices/${d}/messages/events/`, 'plain', 1, 8),
      { cmd: 'pingreq' },
    ],
    [
      { cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '$iothub/methods/POST/#', qos: 0 }, { topic: `devices/${d}/messages/devicebound/#`, qos: 1 }, { topic: '$iothub/twin/PATCH/properties/desired/#', qos: 0 }] },
      pub('$iothub/methods/res/200/?$rid=1', '{"ok":true}'),
      { cmd: 'puback', messageId: 1 },
      { cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['$iothub/methods/POST/#'] },
    ],
  ].map((s) => (s as Packet[]).map(gen));
}

/** Whole sessions before authentication: a device with a wrong key, a provisioning client, no password. */
export function preAuthSeeds(host: string, idScope: string): Buffer[][] {
  const sas = `SharedAccessSignature sr=${host}%2Fdevices%2Fx&sig=${encodeURIComponent(Buffer.alloc(32, 7).toString('base64'))}&se=4102444800`;
  return [
    [mqttConnect('x', `${host}/x/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4`, sas), ...postAuthSeeds('x')[0]!.map((b) => b)],
    [
      mqttConnect('reg-1', `${idScope}/registrations/reg-1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1`, sas),
      gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$dps/registrations/res/#', qos: 1 }] }),
      gen(pub('$dps/registrations/PUT/iotdps-register/?$rid=1', '{"registrationId":"reg-1"}', 1, 2)),
      gen(pub('$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=op', '', 1, 3)),
    ],
    [mqttConnect('y/m', `${host}/y/m/?api-version=2021-04-12`, undefined), gen({ cmd: 'pingreq' })],
  ].map((s) => s.map((p) => (Buffer.isBuffer(p) ? p : gen(p))));
}

function topicArb(d: string): fc.Arbitrary<string> {
  return fc.oneof(
    fuzzBag.map((b) => `devices/${d}/messages/events/${b}`),
    fuzzText.map((t) => `$iothub/twin/GET/?$rid=${t}`),
    fc.tuple(fuzzText, fuzzText).map(([r, v]) => `$iothub/twin/PATCH/properties/reported/?$rid=${r}&$version=${v}`),
    fc.tuple(fc.oneof(fc.integer({ min: -1, max: 1000 }).map(String), fuzzText), fuzzText).map(([s, r]) => `$iothub/methods/res/${s}/?$rid=${r}`),
    fuzzText.map((t) => `devices/${t}/messages/events/`),
    fuzzBag.map((b) => `$dps/registrations/PUT/iotdps-register/?${b}`),
    fuzzText,
  );
}

const filterArb = (d: string): fc.Arbitrary<string> =>
  fc.oneof(fc.constantFrom('$iothub/twin/res/#', '$iothub/methods/POST/#', `devices/${d}/messages/devicebound/#`, '#', '+/+', '$dps/registrations/res/#'), fuzzText);

function packetArb(d: string): fc.Arbitrary<Buffer> {
  return fc
    .oneof(
      { weight: 4, arbitrary: fc.record({ topic: topicArb(d), payload: fuzzBytes, qos: fc.constantFrom(0 as const, 1 as const, 2 as const), id: fc.integer({ min: 1, max: 65535 }) }).map(({ topic, payload, qos, id }) => pub(topic, payload, qos, id)) },
      { weight: 2, arbitrary: fc.record({ filters: fc.array(fc.tuple(filterArb(d), fc.constantFrom(0, 1, 2)), { minLength: 1, maxLength: 4 }), id: fc.integer({ min: 1, max: 65535 }) }).map(({ filters, id }) => ({ cmd: 'subscribe', messageId: id, subscriptions: filters.map(([topic, qos]) => ({ topic, qos })) }) as Packet) },
      { weight: 1, arbitrary: fc.array(filterArb(d), { minLength: 1, maxLength: 3 }).map((u) => ({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: u }) as Packet) },
      { weight: 1, arbitrary: fc.constantFrom<Packet>({ cmd: 'pingreq' }, { cmd: 'puback', messageId: 1 }, { cmd: 'pubrec', messageId: 1 }, { cmd: 'disconnect' }, { cmd: 'connack', returnCode: 0, sessionPresent: false }) },
    )
    .map(gen);
}

function connectArb(host: string, idScope: string): fc.Arbitrary<Buffer> {
  return fc
    .record({
      clientId: fc.oneof(fuzzText, fc.constant('dev'), fuzzText.map((t) => `dev/${t}`)),
      username: fc.option(
        fc.oneof(
          fuzzText.map((t) => `${host}/${t}/?api-version=2021-04-12`),
          fuzzBag.map((b) => `${host}/dev/?${b}`),
          fuzzText.map((t) => `${idScope}/registrations/${t}/api-version=2019-03-31`),
          fuzzText,
        ),
        { nil: undefined },
      ),
      password: fc.option(
        fc.oneof(
          fc.tuple(fuzzText, fuzzText, fuzzText, fuzzText).map(([sr, sig, se, skn]) => `SharedAccessSignature sr=${sr}&sig=${sig}&se=${se}&skn=${skn}`),
          fuzzText,
          fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
        ),
        { nil: undefined },
      ),
      level: fc.constantFrom(4, 4, 4, 3, 5),
    })
    .map(({ clientId, username, password, level }) => {
      const p = mqttConnect(clientId, username, password);
      p.protocolVersion = level;
      if (level === 3) p.protocolId = 'MQIsdp';
      return gen(p);
    });
}

export interface MqttInputs {
  pre: fc.Arbitrary<FuzzInput>;
  post: fc.Arbitrary<FuzzInput>;
}

export function mqttInputs(protocol: Extract<Protocol, 'mqtt' | 'mqtt-ws'>, host: string, idScope: string, deviceId: string): MqttInputs {
  const pre = preAuthSeeds(host, idScope);
  const post = postAuthSeeds(deviceId);
  const mutated = (seeds: Buffer[][], auth: 'none' | 'device') =>
    fc.record({ s: fc.nat(), ops: mutationOps }).map(({ s, ops }): FuzzInput => ({ protocol, auth, kind: `mutated session ${s % seeds.length}`, chunks: applyMutations(seeds[s % seeds.length]!, ops, 'mqtt', seeds) }));
  return {
    pre: fc.oneof(
      mutated(pre, 'none'),
      fc.tuple(connectArb(host, idScope), fc.array(packetArb(deviceId), { maxLength: 5 })).map(([c, rest]): FuzzInput => ({ protocol, auth: 'none', kind: 'generated CONNECT', chunks: [c, ...rest] })),
    ),
    post: fc.oneof(
      mutated(post, 'device'),
      fc.array(packetArb(deviceId), { minLength: 1, maxLength: 8 }).map((chunks): FuzzInput => ({ protocol, auth: 'device', kind: 'generated packets', chunks })),
    ),
  };
}
