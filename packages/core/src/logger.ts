/**
 * Libraries log through this port and never pick a backend; only the CLI builds winston.
 * Messages are constant strings; facts go in `fields`.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LogRecord {
  level: LogLevel;
  message: string;
  fields: LogFields;
}

/** A logger that keeps records in memory: for tests. */
export class MemoryLogger implements Logger {
  constructor(
    readonly records: LogRecord[] = [],
    private readonly base: LogFields = {},
  ) {}
  error(message: string, fields: LogFields = {}): void {
    this.records.push({ level: 'error', message, fields: { ...this.base, ...fields } });
  }
  warn(message: string, fields: LogFields = {}): void {
    this.records.push({ level: 'warn', message, fields: { ...this.base, ...fields } });
  }
  info(message: string, fields: LogFields = {}): void {
    this.records.push({ level: 'info', message, fields: { ...this.base, ...fields } });
  }
  debug(message: string, fields: LogFields = {}): void {
    this.records.push({ level: 'debug', message, fields: { ...this.base, ...fields } });
  }
  child(fields: LogFields): Logger {
    return new MemoryLogger(this.records, { ...this.base, ...fields });
  }
}

export const nullLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return nullLogger;
  },
};
