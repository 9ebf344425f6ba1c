/**
 * Progress on stderr for long CLI commands: a redrawn bar on a terminal (at most ten times a
 * second), a line at each tenth otherwise, so a log file or CI output stays short.
 */
export function progressPrinter(tty: boolean): (done: number, total: number, line: string, perSecond: number) => void {
  let lastTenth = -1;
  let lastDraw = 0;
  return (done, total, line, perSecond) => {
    if (tty) {
      const now = Date.now();
      if (now - lastDraw < 100 && done < total) return;
      lastDraw = now;
      const width = 30;
      const filled = total === 0 ? width : Math.round((done / total) * width);
      const eta = perSecond > 0 ? Math.ceil((total - done) / perSecond) : 0;
      process.stderr.write(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${line}, eta ${eta}s   `);
      if (done === total) process.stderr.write('\n');
      return;
    }
    const tenth = total === 0 ? 10 : Math.floor((done / total) * 10);
    if (tenth !== lastTenth || done === total) {
      lastTenth = tenth;
      process.stderr.write(`${line}\n`);
    }
  };
}
