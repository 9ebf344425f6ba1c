/**
 * Schema version 19 (PostgreSQL only): the log append as one server-side function (issue 16's
 * `--workers` goal, src/log/sql/sql-log.ts).
 *
 * An append numbers its records under each touched partition's row lock and holds the locks until
 * commit, so commit order is sequence order (decision 0005). Run as statements from Node, the locks
 * were held across BEGIN, one UPDATE per partition, the INSERTs and COMMIT: five or more round trips,
 * each waiting for the writer's event loop, which under load is busy with other connections for
 * milliseconds at a time. Two workers then took turns on the rows for most of each batch (38 % of
 * samples waiting). As one autocommitted call the locks are taken and released inside PostgreSQL:
 * held only while the server numbers, inserts and flushes the commit.
 *
 * `set_config(..., true)` outside a function SET clause lasts to the end of the transaction, so
 * the call's own commit waits for the WAL flush even where the server or role runs with
 * synchronous_commit=off. Rows are locked in ascending partition order (LockRows above the sort),
 * so two appends never wait on each other crosswise.
 *
 * Arguments are parallel arrays, one element per record in batch order (the property maps and
 * endpoint sets as one JSON array each: PostgreSQL parses that in C, where node-postgres would
 * escape every element of a text[] in JavaScript); records of a partition get consecutive numbers
 * and byte positions in that order. A record's size (its bytes for retention, as the SQLite path
 * counts them) is computed here from the same text. Returns one row per partition touched: its
 * first sequence number and byte position in this batch, the enqueued time given, and the sizes of
 * its records in order.
 */
export function schemaV19PostgresLogAppend(): string {
  return logAppendFunction(false);
}

/** The function's text; `withSync`: the version 21 signature, whose last argument says whether the commit waits for the WAL flush. */
export function logAppendFunction(withSync: boolean): string {
  return `
CREATE FUNCTION log_append(
  p_parts integer[], p_devices text[], p_modules text[], p_bodies bytea[],
  p_properties json, p_system json, p_endpoints json, p_now bigint${withSync ? ', p_sync boolean' : ''}
) RETURNS TABLE (o_part integer, o_first_seq bigint, o_first_pos bigint, o_ms bigint, o_sizes bigint[])
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM set_config('synchronous_commit', ${withSync ? "CASE WHEN p_sync THEN 'on' ELSE 'off' END" : "'on'"}, true);
  PERFORM 1 FROM log_partitions lp WHERE lp.part = ANY (p_parts) ORDER BY lp.part FOR UPDATE;
  RETURN QUERY
  WITH pr AS (
    SELECT e.i, e.v::text AS t FROM json_array_elements(p_properties) WITH ORDINALITY AS e(v, i)
  ), sy AS (
    SELECT e.i, e.v::text AS t FROM json_array_elements(p_system) WITH ORDINALITY AS e(v, i)
  ), ep AS (
    SELECT e.i, CASE WHEN json_typeof(e.v) = 'null' THEN NULL ELSE e.v::text END AS t
    FROM json_array_elements(p_endpoints) WITH ORDINALITY AS e(v, i)
  ), r AS (
    SELECT s.i, p_parts[s.i] AS part, pr.t AS props, sy.t AS sys, ep.t AS eps,
      (octet_length(p_bodies[s.i]) + octet_length(p_devices[s.i]) + octet_length(p_modules[s.i])
        + octet_length(pr.t) + octet_length(sy.t))::bigint AS size
    FROM generate_subscripts(p_parts, 1) AS s(i)
    JOIN pr ON pr.i = s.i JOIN sy ON sy.i = s.i JOIN ep ON ep.i = s.i
  ), agg AS (
    SELECT r.part, count(*) AS n, sum(r.size)::bigint AS total,
      (array_agg(r.size ORDER BY r.i DESC))[1] AS last_size, array_agg(r.size ORDER BY r.i) AS sizes
    FROM r GROUP BY r.part
  ), h AS (
    UPDATE log_partitions lp
    SET next_seq = lp.next_seq + agg.n, next_pos = lp.next_pos + agg.total,
        last_pos = lp.next_pos + agg.total - agg.last_size, last_ms = GREATEST(lp.last_ms, p_now)
    FROM agg WHERE lp.part = agg.part
    RETURNING lp.part, lp.next_seq - agg.n AS first_seq, lp.next_pos - agg.total AS first_pos, lp.last_ms AS ms, agg.sizes
  ), ins AS (
    INSERT INTO log_records (part, seq, pos, enqueued_ms, size, device_id, module_id, body, properties, system_properties, endpoints)
    SELECT r.part,
      h.first_seq + row_number() OVER w - 1,
      h.first_pos + (sum(r.size) OVER w)::bigint - r.size,
      h.ms, r.size, p_devices[r.i], p_modules[r.i], p_bodies[r.i], r.props, r.sys, r.eps
    FROM r JOIN h ON h.part = r.part
    WINDOW w AS (PARTITION BY r.part ORDER BY r.i)
  )
  SELECT h.part, h.first_seq, h.first_pos, h.ms, h.sizes FROM h;
END
$fn$;
`;
}
