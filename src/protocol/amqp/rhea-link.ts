/**
 * What rhea keeps of a link's attach performatives (lib/link.js: `remote.attach` as the peer sent
 * it, `local.attach` as the hub will answer), which its typings leave out. One typed view, so the
 * AMQP code reads a client's attach in one way.
 */
import type { Receiver, Sender } from 'rhea';

type Link = Sender | Receiver;

/** A source or target as rhea unwrapped it (null: the client sent none). */
export interface AttachTerminus {
  address?: unknown;
  filter?: unknown;
}

/** The attach performative's fields the hub reads (AMQP 1.0, 2.7.3). */
export interface AttachFields {
  source?: AttachTerminus | null;
  target?: AttachTerminus | null;
  /** 0 unsettled, 1 settled, 2 mixed. */
  snd_settle_mode?: number;
  properties?: Record<string, unknown>;
  desired_capabilities?: unknown;
}

/** The client's attach, once it arrived (always, in a `sender_open` / `receiver_open` handler). */
export function remoteAttach(link: Link): AttachFields | undefined {
  return (link as unknown as { remote: { attach?: AttachFields } }).remote.attach;
}

/** The attach the hub answers with; rhea writes it on a later tick, so fields set in the open handler go out. */
export function localAttach(link: Link): AttachFields {
  return (link as unknown as { local: { attach: AttachFields } }).local.attach;
}
