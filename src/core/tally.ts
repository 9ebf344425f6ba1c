/** Message counts, bumped by the edges as plain integers; `gatehouse_messages_total` reads them at scrape. */
export class MessageTally {
  telemetryIn = 0;
  twinIn = 0;
  c2dOut = 0;
  methodOut = 0;
  twinOut = 0;
}
