/**
 * Consumer groups of the built-in Event Hubs-compatible endpoint, in the shape of Azure's resource
 * provider (`az iot hub consumer-group create|list|show|delete`):
 * `PUT|GET|DELETE /eventHubEndpoints/events/ConsumerGroups/{name}`, `GET .../ConsumerGroups`.
 * `events` is the only endpoint, as on Azure; `$Default` always exists and cannot be deleted.
 */
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import type { ConsumerGroup, ConsumerGroups } from '../../../hub/telemetry/consumer-groups.js';

type Params = { Params: { endpoint: string; name: string } };

function checkEndpoint(endpoint: string): void {
  if (endpoint.toLowerCase() !== 'events') throw new HubError('ResourceNotFound', `No Event Hubs-compatible endpoint named ${endpoint.slice(0, 60)}: the built-in one is events.`);
}

/** EventHubConsumerGroupInfo. */
function render(g: ConsumerGroup): Record<string, unknown> {
  return { name: g.name, type: 'Microsoft.Devices/IotHubs/EventHubEndpoints/ConsumerGroups', properties: { name: g.name, created: g.createdAt } };
}

export function registerConsumerGroupRoutes(app: FastifyInstance, groups: ConsumerGroups): void {
  app.get<{ Params: { endpoint: string } }>('/eventHubEndpoints/:endpoint/ConsumerGroups', async (req) => {
    checkEndpoint(req.params.endpoint);
    return { value: (await groups.list()).map(render) };
  });
  app.get<Params>('/eventHubEndpoints/:endpoint/ConsumerGroups/:name', async (req) => {
    checkEndpoint(req.params.endpoint);
    return render(await groups.get(req.params.name));
  });
  app.put<Params>('/eventHubEndpoints/:endpoint/ConsumerGroups/:name', async (req) => {
    checkEndpoint(req.params.endpoint);
    return render(await groups.create(req.params.name));
  });
  app.delete<Params>('/eventHubEndpoints/:endpoint/ConsumerGroups/:name', async (req, reply) => {
    checkEndpoint(req.params.endpoint);
    await groups.delete(req.params.name);
    return reply.status(200).send();
  });
}
