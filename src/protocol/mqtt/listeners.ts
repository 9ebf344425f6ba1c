/**
 * Thin listeners: MQTT over TLS on its own port, MQTT over WebSocket at `/$iothub/websocket` on
 * the HTTPS server (the SDK's MqttWs transport, subprotocol `mqtt`). Both request a client
 * certificate without requiring one (SAS devices send none) and hand the broker a stream.
 */
import type { Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import { peerChain } from '../transport/peer.js';
import { shedHandshakeState } from '../transport/tls-idle.js';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import type { MqttBroker } from './broker.js';
import { MAX_PACKET_BYTES } from './connection.js';

export interface TlsOptions {
  key: string;
  cert: string;
  minVersion: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  /** The TLS handshake timeout (default 10 s). */
  handshakeTimeoutMs?: number;
}

export function createMqttTlsServer(broker: MqttBroker, tls: TlsOptions): TlsServer {
  const server = createServer({
    key: tls.key,
    cert: tls.cert,
    minVersion: tls.minVersion,
    requestCert: true,
    rejectUnauthorized: false,
    // Bound the handshake so a silent socket cannot hold a slot.
    handshakeTimeout: tls.handshakeTimeoutMs ?? 10_000,
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    socket.setNoDelay(true);
    shedHandshakeState(socket);
    broker.handle(socket, {
      chain: peerChain(socket),
      remoteAddress: socket.remoteAddress ?? '',
      transport: 'mqtt',
      tlsVersion: socket.getProtocol() ?? undefined,
    });
  });
  // A failed handshake concerns that socket only.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  return server;
}

export const WEBSOCKET_PATH = '/$iothub/websocket';
/** Where @azure/event-hubs opens AMQP over WebSocket (its `webSocketOptions`): AMQP only. */
export const SERVICEBUS_WEBSOCKET_PATH = '/$servicebus/websocket';

/** Takes WebSockets that asked for AMQP (subprotocol `AMQPWSB10`). */
export interface AmqpWebSocketAcceptor {
  acceptWebSocket(ws: WebSocket, tlsSocket: TLSSocket): void;
}

/**
 * Routes WebSocket upgrades at `/$iothub/websocket` on the HTTPS server: subprotocol `mqtt` to the
 * broker, `AMQPWSB10` to the AMQP server; at `/$servicebus/websocket` (the Event Hubs clients'), AMQP only.
 */
export function attachMqttWebSocket(server: HttpsServer, broker: MqttBroker, amqp?: AmqpWebSocketAcceptor): WebSocketServer {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_PACKET_BYTES,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : amqp !== undefined && protocols.has('AMQPWSB10') ? 'AMQPWSB10' : false),
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    let path = '';
    try {
      path = decodeURIComponent((req.url ?? '').split('?')[0] ?? '').toLowerCase();
    } catch {
      path = '';
    }
    if (path !== WEBSOCKET_PATH && path !== SERVICEBUS_WEBSOCKET_PATH) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (path === SERVICEBUS_WEBSOCKET_PATH && ws.protocol !== 'AMQPWSB10') {
        ws.close(1002, 'AMQPWSB10 only');
        return;
      }
      if (ws.protocol === 'AMQPWSB10' && amqp !== undefined) {
        amqp.acceptWebSocket(ws, req.socket as TLSSocket);
        return;
      }
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      const tlsSocket = req.socket as TLSSocket;
      broker.handle(stream, {
        chain: peerChain(tlsSocket),
        remoteAddress: tlsSocket.remoteAddress ?? '',
        transport: 'mqtt-ws',
        tlsVersion: tlsSocket.getProtocol() ?? undefined,
      });
    });
  });
  return wss;
}
