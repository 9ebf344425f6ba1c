/**
 * The IoT Hub query language subset behind `POST /devices/query` (Azure: "IoT Hub query language
 * for device and module twins, jobs, and message routing"). Pure: parse once with parseQuery, then
 * filter with matches, shape rows with project, or feed an Aggregator for COUNT / GROUP BY.
 */
export { parseQuery } from './parser.js';
export type { CompareOp, Expr, FunctionName, Operand, ParsedQuery, QuerySource, SelectClause } from './parser.js';
export { Aggregator, isAggregate, matches, project } from './evaluate.js';
