/**
 * Schema version 13: who created a device, and which registration ids a factory credential may
 * enroll (issue 14: device takeover through DPS and EST).
 *
 * `devices.origin`: `registry` (the registry API: an operator, a back end, a bulk import),
 * `individual:<registrationId>` or `group:<enrollmentGroupId>` (the provisioning service, for that
 * enrollment). NULL on the rows that existed before this version: their origin is unknown, and the
 * provisioning service decides from its registration records (then writes what it found).
 *
 * `est_credentials.registration_ids`: a JSON array of registration-id patterns (`*` matches any
 * run of characters). Credentials made before this version get the empty list, which allows
 * nothing: an operator gives each station its scope by making a new credential.
 */
export function schemaV13(): string {
  // The same statements on both dialects.
  return `
ALTER TABLE devices ADD COLUMN origin TEXT;
ALTER TABLE est_credentials ADD COLUMN registration_ids TEXT NOT NULL DEFAULT '[]';
`;
}
