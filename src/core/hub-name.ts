/**
 * The hub's name, and the name of its Event Hubs-compatible endpoint (the connection string's
 * `EntityPath`). Azure names a hub by the first label of its host name (`myhub` in
 * `myhub.azure-devices.net`), and a new hub's built-in endpoint by the hub's name. A hub reached by
 * an IP address has no label to take: its name is the address.
 */
import { isIP } from 'node:net';

export function hubName(hostname: string): string {
  if (isIP(hostname) !== 0) return hostname;
  return hostname.split('.')[0] ?? hostname;
}

/** The Event Hubs-compatible name (`az iot hub show --query properties.eventHubEndpoints.events.path`). */
export function eventHubsName(hostname: string): string {
  return hubName(hostname);
}

/**
 * Whether `entity` names this hub's Event Hubs-compatible endpoint: the hub's name, or (what
 * hand-made connection strings used before `gatehouse info` printed one) its host name. Case does
 * not matter, as in Event Hubs.
 */
export function isEventHubsEntity(entity: string, hostname: string): boolean {
  const e = entity.toLowerCase();
  return e === eventHubsName(hostname).toLowerCase() || e === hostname.toLowerCase();
}

/** The connection string `az iot hub connection-string show --default-eventhub` prints, for a policy. */
export function eventHubsConnectionString(hostname: string, policyName: string, key: string): string {
  return `Endpoint=sb://${hostname}/;SharedAccessKeyName=${policyName};SharedAccessKey=${key};EntityPath=${eventHubsName(hostname)}`;
}
