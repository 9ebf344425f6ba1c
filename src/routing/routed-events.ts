/**
 * The non-telemetry sources of routing (decision 0006): twin changes, device lifecycle and
 * connection state events are built by the services that own those changes (source-events.ts
 * builds them as Azure's schemas say) and appended to the log, in the device's partition, only
 * when an enabled route for their source exists and matches. Nothing waits for them: the change
 * itself is done when they are emitted; a failed append is logged, as Azure's event delivery does
 * not hold back the operation either.
 */
import type { Logger } from 'pino';
import type { LogMessage, LogPlacement } from '../log/log-ports.js';
import type { RouteSource } from './routing-config.js';
import type { Router } from './router.js';

export interface SourceEventSink {
  /** The hub's name, for the events' hubName property and user-id. */
  readonly hubName: string;
  /** Whether a route for the source exists (to skip reading what an event would carry). */
  wants(source: Exclude<RouteSource, 'DeviceMessages'>): boolean;
  /** Builds the event only when a route for the source exists, then routes and appends it. */
  emit(source: Exclude<RouteSource, 'DeviceMessages'>, build: () => LogMessage | Promise<LogMessage>): void;
}

export class RoutedEvents implements SourceEventSink {
  constructor(
    private readonly router: Router,
    private readonly log: { append(m: LogMessage): Promise<LogPlacement> },
    readonly hubName: string,
    private readonly logger: Logger,
  ) {}

  wants(source: Exclude<RouteSource, 'DeviceMessages'>): boolean {
    return this.router.hasRoutesFor(source);
  }

  emit(source: Exclude<RouteSource, 'DeviceMessages'>, build: () => LogMessage | Promise<LogMessage>): void {
    if (!this.router.hasRoutesFor(source)) return;
    void this.#append(source, build).catch((err: unknown) => this.logger.warn({ err, event: 'routing.source-event-failed', source }, `a ${source} event could not be routed`));
  }

  async #append(source: Exclude<RouteSource, 'DeviceMessages'>, build: () => LogMessage | Promise<LogMessage>): Promise<void> {
    const message = await build();
    const endpoints = await this.router.endpointsFor(message, source);
    if (endpoints.length > 0) await this.log.append({ ...message, endpoints });
  }
}
