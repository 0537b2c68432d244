/**
 * The agent's one way to run operator commands (track scripts, notify hooks): argument arrays, never a shell;
 * a timeout on every call; a result, never an exception, for anything the command itself does wrong.
 */
import { execa } from 'execa';
import { CoordError, errorMessage } from '@coord/core';

export interface RunOptions {
  /** Wall time allowed; past it the command's whole process group gets SIGKILL and the run counts as failed. */
  readonly timeoutMs: number;
  /** Added to the agent's own environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

export interface RunResult {
  /** Exited 0 within the timeout. */
  readonly ok: boolean;
  /** Absent when the command was killed by a signal or could not be started. */
  readonly exitCode?: number;
  /** Set when a signal ended it (SIGKILL after a timeout, or someone else's). */
  readonly signal?: string;
  readonly timedOut: boolean;
  readonly durationMs: number;
  /** The last bytes of stderr (or why it could not start), for logs. */
  readonly stderrTail: string;
}

/** The shape the tracker and the hook runner take, so tests can pass a fake. */
export type CommandRunner = (argv: readonly string[], options: RunOptions) => Promise<RunResult>;

const STDERR_TAIL_BYTES = 1024;
/**
 * After the kill, how long to wait for the pipes to close. A grandchild that left the process group (setsid)
 * could hold stderr open forever; the run is reported as timed out without waiting for it.
 */
const AFTER_KILL_GRACE_MS = 1000;

/**
 * Run `argv` (argv[0] is looked up in PATH, no shell) and report how it went.
 *
 * The command runs in its own process group so a timeout kills what it started too (a check script's `curl`
 * would otherwise hold the pipe open and outlive it), as keepalived does for its scripts. stdin and stdout go
 * nowhere; only the tail of stderr is kept, so a chatty command cannot grow our memory.
 */
export async function runCommand(argv: readonly string[], options: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const [file, ...args] = argv;
  if (file === undefined || file === '') {
    return { ok: false, timedOut: false, durationMs: 0, stderrTail: 'empty command' };
  }

  const subprocess = execa(file, args, {
    reject: false,
    shell: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
    detached: true,
    killSignal: 'SIGKILL',
    extendEnv: true,
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  });

  let tail = Buffer.alloc(0);
  subprocess.stderr?.on('data', (chunk: Buffer) => {
    tail = Buffer.concat([tail, chunk]);
    if (tail.length > STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
  });

  let timedOut = false;
  let giveUp: (() => void) | undefined;
  const abandoned = new Promise<'abandoned'>((resolve) => {
    giveUp = () => resolve('abandoned');
  });
  let graceTimer: NodeJS.Timeout | undefined;
  const killTimer = setTimeout(
    () => {
      timedOut = true;
      killGroup(subprocess.pid);
      subprocess.kill('SIGKILL');
      graceTimer = setTimeout(() => giveUp?.(), AFTER_KILL_GRACE_MS);
    },
    Math.max(1, options.timeoutMs),
  );

  try {
    const r = await Promise.race([subprocess, abandoned]);
    const stderrTail = tail
      .toString('utf8')
      .replace(/^\uFFFD/, '')
      .trim();
    if (r === 'abandoned') {
      return { ok: false, signal: 'SIGKILL', timedOut: true, durationMs: elapsed(), stderrTail };
    }
    const notStarted = r.failed && r.exitCode === undefined && r.signal === undefined;
    return {
      ok: !timedOut && r.exitCode === 0,
      ...(r.exitCode === undefined ? {} : { exitCode: r.exitCode }),
      ...(r.signal === undefined ? {} : { signal: r.signal }),
      timedOut,
      durationMs: elapsed(),
      stderrTail: notStarted ? `cannot run ${file}: ${r.shortMessage}` : stderrTail,
    };
  } catch (e) {
    // reject: false makes this unexpected; still a result, not an exception.
    return {
      ok: false,
      timedOut,
      durationMs: elapsed(),
      stderrTail: `cannot run ${file}: ${errorMessage(e)}`,
    };
  } finally {
    clearTimeout(killTimer);
    if (graceTimer !== undefined) clearTimeout(graceTimer);
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Characters a shell would act on and we cannot honour without one. */
const REFUSED: Readonly<Record<string, string>> = {
  '|': 'a pipe',
  ';': 'a command separator',
  '&': 'a background or && operator',
  $: 'a variable or command substitution',
  '`': 'a command substitution',
  '<': 'a redirection',
  '>': 'a redirection',
  '(': 'a subshell',
  ')': 'a subshell',
  '\n': 'a second command line',
};

/**
 * Split a configured command like keepalived's `script "/usr/bin/check --port 80"` into argv, without a shell.
 *
 * Words are separated by blanks; '...' is literal, "..." is literal except `\"`, `\\`, `\$` and `` \` ``; a
 * backslash outside quotes escapes the next character. No globbing, no tilde or variable expansion: what is
 * written is what the command gets. Anything a shell would have done differently (pipes, `;`, `&`, `$`,
 * backticks, redirections, subshells, a leading `#` or `~`, a leading `NAME=value`) is refused with
 * ERR_COORD_CONFIG rather than silently passed as text.
 */
export function parseCommand(text: string): string[] {
  const refuse = (what: string, at: number, hint: string): never => {
    throw new CoordError('ERR_COORD_CONFIG', `command ${JSON.stringify(text)}: ${what} at offset ${at}`, {
      hint,
      details: { command: text, offset: at },
    });
  };
  const noShell =
    'commands run without a shell: quote the character, or put the pipeline in a script and give its path';

  const words: string[] = [];
  let word = '';
  let inWord = false;
  let wordQuoted = false;
  let i = 0;
  const end = (): void => {
    if (!inWord) return;
    words.push(word);
    word = '';
    inWord = false;
    wordQuoted = false;
  };

  while (i < text.length) {
    const c = text.charAt(i);
    if (c === ' ' || c === '\t') {
      end();
      i++;
      continue;
    }
    if (!inWord && (c === '#' || c === '~')) {
      refuse(
        c === '#' ? "a '#' that a shell would read as a comment" : "a '~' that a shell would expand",
        i,
        c === '#' ? noShell : 'write the home directory out as an absolute path',
      );
    }
    if (!inWord) {
      inWord = true;
      wordQuoted = false;
    }
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) refuse('an unterminated single quote', i, "close the quote with '");
      word += text.slice(i + 1, close);
      wordQuoted = true;
      i = close + 1;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= text.length) refuse('an unterminated double quote', i, 'close the quote with "');
        const d = text.charAt(j);
        if (d === '"') break;
        if (d === '\\') {
          const n = text.charAt(j + 1);
          if (n === '"' || n === '\\' || n === '$' || n === '`') {
            word += n;
            j += 2;
            continue;
          }
          word += d;
          j++;
          continue;
        }
        if (d === '$' || d === '`') {
          refuse(
            `${REFUSED[d] ?? 'a substitution'} ('${d}') inside double quotes`,
            j,
            "use single quotes for a literal '$'",
          );
        }
        word += d;
        j++;
      }
      wordQuoted = true;
      i = j + 1;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= text.length) refuse('a trailing backslash', i, 'remove it or escape it as \\\\');
      word += text.charAt(i + 1);
      wordQuoted = true;
      i += 2;
      continue;
    }
    const why = REFUSED[c];
    if (why !== undefined) refuse(`${why} ('${c === '\n' ? '\\n' : c}')`, i, noShell);
    if (c === '=' && words.length === 0 && !wordQuoted && /^[A-Za-z_][A-Za-z0-9_]*$/.test(word)) {
      refuse(
        'a leading NAME=value that a shell would take as an environment setting',
        i,
        'give the program first; use /usr/bin/env NAME=value PROGRAM ... to set a variable',
      );
    }
    word += c;
    i++;
  }
  end();
  if (words.length === 0)
    refuse('no program', 0, 'give the program to run, e.g. "/usr/local/bin/check-haproxy"');
  if (words[0] === '') refuse('an empty program name', 0, 'give the program to run as the first word');
  return words;
}
