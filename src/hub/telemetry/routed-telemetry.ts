/**
 * The telemetry sink MQTT, AMQP and device HTTPS hand device messages to: the routes in effect
 * decide where a message goes (decision 0006), and the partitioned log, the hub's one durable
 * stream, keeps it with that endpoint set; the PUBACK or 204 waits for the append to be durable
 * (group commit). A message routed nowhere is acknowledged and not stored.
 *
 * No promise of its own per message when no route reads `$twin` (the router answers at once), and
 * the message handed over gets its endpoint set in place instead of being copied.
 */
import type { MessageTally } from '../../core/tally.js';
import type { LogMessage, LogPlacement } from '../../log/log-ports.js';
import type { Router } from '../../routing/router.js';
import type { LogWriter } from './log-writer.js';

/** The shape of protocol/transport's TelemetrySink (the hub does not import the transports). */
export interface RoutedTelemetry {
  append(message: LogMessage): Promise<LogPlacement | undefined>;
}

export function routedTelemetrySink(router: Router, log: Pick<LogWriter, 'append'>, tally: MessageTally): RoutedTelemetry {
  const stored = (message: LogMessage, endpoints: string[]): Promise<LogPlacement | undefined> => {
    if (endpoints.length === 0) return Promise.resolve(undefined);
    message.endpoints = endpoints;
    return log.append(message);
  };
  return {
    append(message) {
      // Counted here, where every transport hands a message over: one integer increment.
      tally.telemetryIn++;
      try {
        const endpoints = router.endpointsSoon(message);
        return Array.isArray(endpoints) ? stored(message, endpoints) : endpoints.then((e) => stored(message, e));
      } catch (err) {
        return Promise.reject(err);
      }
    },
  };
}
