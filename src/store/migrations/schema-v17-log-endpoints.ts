/**
 * Schema version 17: the endpoints a log record is routed to (issue 17, decision 0006): a JSON
 * array of endpoint names set by ingestion from the routes in effect. NULL for records written
 * before routing existed; readers of the built-in endpoint count those as `events`.
 */
export function schemaV17(): string {
  return `
ALTER TABLE log_records ADD COLUMN endpoints TEXT;
`;
}
