/** Azure IoT Hub's message routing query language: route conditions and enrichment values. */
export { MAX_CONDITION_LENGTH, MAX_NESTING, RoutingQueryError } from './ast.js';
export { BodyPaths } from './body-scan.js';
export { compileCondition, type CompiledCondition } from './compile.js';
export { enrichmentValue, validateEnrichmentValue, MAX_ENRICHMENT_VALUE_LENGTH } from './enrichment.js';
export { parseBody, prepareInput, PreparedInput, type RoutingInput } from './input.js';
export { systemWireName } from './system-properties.js';
