/**
 * Who a CBS put-token the hub refused before checking it (an audience naming another hub) claimed
 * to be, for its audit row: the device or module its audience names (on whichever host), else the
 * policy its token names (`skn`). The caller's word, recorded as such; the gate bounds its length.
 */
export function claimedBy(audience: string, token: string): { subject: 'device' | 'module' | 'policy'; identity: string } {
  const d = /\/devices\/([^/]+)(?:\/modules\/([^/]+))?$/i.exec(audience);
  const decoded = (s: string): string => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  if (d?.[1] !== undefined) return d[2] === undefined ? { subject: 'device', identity: decoded(d[1]) } : { subject: 'module', identity: `${decoded(d[1])}/${decoded(d[2])}` };
  const skn = /[\s&]skn=([^&]*)/.exec(token)?.[1];
  return skn === undefined ? { subject: 'device', identity: '' } : { subject: 'policy', identity: decoded(skn) };
}
