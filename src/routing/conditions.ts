/** The routing query language (./query/) as the engine uses it: one import point. */
export { BodyPaths, compileCondition, enrichmentValue, prepareInput, PreparedInput, RoutingQueryError, validateEnrichmentValue, type CompiledCondition, type RoutingInput } from './query/index.js';
