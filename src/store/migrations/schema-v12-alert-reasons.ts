/**
 * Schema version 12: an authFailures alert rule may watch only some failure reasons (issue 14:
 * cross-device attempts and refused TLS handshakes an operator alerts on by themselves).
 * `alert_rules.reasons` is a JSON array of reason codes, NULL for every failure (the rules
 * stored before keep counting what they counted).
 */
export function schemaV12(): string {
  return `
ALTER TABLE alert_rules ADD COLUMN reasons TEXT;
`;
}
