/**
 * The local cluster's TCP balancer: connections go to the nodes in turn, bytes pass both ways
 * untouched, a node that stops answering is skipped (its clients' reconnects land on the others),
 * and closing the balancer cuts what it carries.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TcpBalancer } from '../src/cli/cluster/balancer.js';

const FRONT = '127.0.32.1';
const NODES = ['127.0.32.11', '127.0.32.12', '127.0.32.13'];
const PORT = 18443;

/** A node that answers every connection with its own address, then echoes. */
function node(address: string): Promise<Server> {
  const server = createServer((s) => {
    s.write(`${address}\n`);
    s.pipe(s);
  });
  return new Promise((r) => server.listen(PORT, address, () => r(server)));
}

function ask(payload = ''): Promise<{ first: string; echo: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: FRONT, port: PORT });
    let got = '';
    s.on('error', reject);
    s.on('data', (c: Buffer) => {
      got += c.toString();
      const nl = got.indexOf('\n');
      if (nl >= 0 && got.length - nl - 1 >= payload.length) resolve({ first: got.slice(0, nl), echo: got.slice(nl + 1), socket: s });
    });
    s.on('connect', () => s.write(payload));
  });
}

describe('the local cluster balancer', () => {
  const servers = new Map<string, Server>();
  let balancer: TcpBalancer;

  before(async () => {
    for (const a of NODES) servers.set(a, await node(a));
    balancer = new TcpBalancer({ address: FRONT, ports: [PORT], backends: NODES, downMs: 60_000 });
    await balancer.listen();
  });

  after(async () => {
    await balancer.close();
    for (const s of servers.values()) s.close();
  });

  it('sends connections to the nodes in turn and passes bytes both ways', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await ask(`hello-${i}`);
      seen.push(r.first);
      assert.equal(r.echo, `hello-${i}`);
      r.socket.destroy();
    }
    assert.deepEqual([...new Set(seen)].sort(), NODES);
    assert.deepEqual(seen.slice(0, 3).sort(), NODES, 'each node once per turn');
  });

  it('skips a node that stopped, so every connection still lands', async () => {
    const dead = NODES[1]!;
    await new Promise<void>((r) => servers.get(dead)!.close(() => r()));
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await ask();
      seen.push(r.first);
      r.socket.destroy();
    }
    assert.ok(!seen.includes(dead));
    assert.deepEqual([...new Set(seen)].sort(), [NODES[0], NODES[2]]);
  });

  it('closing the balancer cuts the connections it carries', async () => {
    const r = await ask();
    const closed = new Promise<void>((res) => r.socket.once('close', () => res()));
    await balancer.close();
    await closed;
    balancer = new TcpBalancer({ address: FRONT, ports: [PORT], backends: NODES });
    await balancer.listen();
  });
});
