/** Reading the record of issued certificates whole, a page of 1,000 at a time (serial order). */
import type { AuthorityStore, IssuedCertificateRecord, IssuedQuery } from '../store/authority-ports.js';

const PAGE = 1000;

/** Every issued certificate matching the query, revoked or not. */
export async function allIssued(store: Pick<AuthorityStore, 'listIssued'>, query: Omit<IssuedQuery, 'limit' | 'after'>): Promise<IssuedCertificateRecord[]> {
  const out: IssuedCertificateRecord[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.listIssued({ ...query, limit: PAGE, ...(after === undefined ? {} : { after }) });
    out.push(...page);
    if (page.length < PAGE) return out;
    after = page[page.length - 1]!.serial;
  }
}
