import winston from 'winston';
import type { Logger, LogFields, LogLevel } from '@coord/core';

/**
 * The only place a log backend is chosen: JSON lines (journald, files, log shippers) or a readable, dated line
 * with the fields appended (`--log-format`; by default text on a terminal, JSON otherwise). Logs go to stderr so
 * `--json` output on stdout stays clean. Colour only on a terminal.
 */
export function createLogger(level: LogLevel, opts: { json?: boolean } = {}): Logger {
  const json = opts.json ?? !process.stderr.isTTY;
  const format = json
    ? winston.format.combine(winston.format.timestamp(), winston.format.json())
    : winston.format.combine(
        winston.format.timestamp({ format: 'YYYY-MM-DD HH:mm:ss.SSS' }),
        ...(process.stderr.isTTY ? [winston.format.colorize()] : []),
        winston.format.printf((info) => {
          const { timestamp, level: lvl, message, ...rest } = info;
          const fields = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          return `${String(timestamp)} ${lvl} ${String(message)}${fields === '' ? '' : ` ${fields}`}`;
        }),
      );
  const w = winston.createLogger({
    level,
    format,
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
  return wrap(w);
}

function wrap(w: winston.Logger): Logger {
  return {
    error: (m: string, f?: LogFields) => void w.error(m, f),
    warn: (m: string, f?: LogFields) => void w.warn(m, f),
    info: (m: string, f?: LogFields) => void w.info(m, f),
    debug: (m: string, f?: LogFields) => void w.debug(m, f),
    child: (fields: LogFields) => wrap(w.child(fields)),
  };
}
