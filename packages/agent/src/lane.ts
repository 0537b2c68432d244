import { errorMessage, type Logger } from '@coord/core';

/**
 * A serial lane: jobs run one at a time, in order. The group runner puts host changes (VIP add/remove) here so
 * "remove the VIP, then resign" can never be reordered.
 */
export class Lane {
  private tail: Promise<void> = Promise.resolve();
  private depth = 0;

  constructor(private readonly logger: Logger) {}

  run(what: string, job: () => Promise<void> | void): Promise<void> {
    this.depth++;
    const next = this.tail.then(async () => {
      try {
        await job();
      } catch (e) {
        this.logger.error('lane job failed', { job: what, error: errorMessage(e) });
      } finally {
        this.depth--;
      }
    });
    this.tail = next;
    return next;
  }

  /** Resolves when everything queued so far has run. */
  idle(): Promise<void> {
    return this.tail;
  }

  get pending(): number {
    return this.depth;
  }
}
