/**
 * coord's own account of a round, to explain a violation to whoever reads the report. Never used for a verdict:
 * check.ts judges from the observers only, so coord cannot pass by describing itself well. The lines come from the
 * nodes' JSON logs in the lab's run dir ('transition' with its reason code, 'vip claimed', 'vip released', the
 * wire probe's waits, and every warning or error).
 */
import type { TransitionReason } from '@coord/election';
import type { Window } from './check.js';

/**
 * What each transition reason code means, for a reader of a round's story (docs/design.md has the argument).
 * A `Record` over the closed union, so a new code fails the typecheck until it is explained here.
 */
export const REASON_TEXT: Readonly<Record<TransitionReason, string>> = {
  'vacant-best': 'the group is vacant and this node is the best candidate',
  'vacant-too-long': 'the group has been vacant too long (the best candidate is silent)',
  elected: 'won after a clean release: claims at once',
  'elected-guarded': 'won after an unclean vacancy: the takeover guard, then a quiet wire',
  adopted: 'found its own leader key (a lost campaign reply): treated as unclean',
  maintenance: 'coord maintenance on: handed the group over, stands with priority 0',
  'handed-over':
    'the previous holder removed its VIP and handed it the group in one transaction: claims at once',
  'lost-race': 'another node won the campaign',
  'session-lost': 'its etcd session (lease) was lost',
  'session-replaced': 'its etcd session was replaced',
  fenced: 'its own deadline passed, or netlink answered too late',
  'leader-vanished': 'the leader key went away',
  'leader-taken': 'another node holds the leader key',
  preempted: 'a better candidate preempts',
  fault: 'a tracked check failed',
  'sync-group': 'its sync group’s leading group is held by another node: hands over to it',
  'vrrp-master': 'hybrid mode: a keepalived node is VRRP Master of the group; waits until it steps down',
  'slow-acks': 'etcd acks too slow to claim safely: hands over',
  stopping: 'coord is stopping',
};

/** Info messages worth telling; every warning and error is told as well. */
const TOLD = new Set([
  'node started',
  'node stopped',
  'transition',
  'vip claimed',
  'vip released',
  'vip still answered on the wire; waiting',
  'resigned',
  'session restarting',
  'config reloaded',
]);

/** One thing a node said about itself. */
export interface StoryLine {
  t: number;
  node: string;
  text: string;
}

const str = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : '';

function isReason(r: string): r is TransitionReason {
  return Object.hasOwn(REASON_TEXT, r);
}

/** One log line as a sentence, or undefined when it is not worth telling. */
export function tell(line: Readonly<Record<string, unknown>>): string | undefined {
  const message = str(line['message']);
  const level = str(line['level']);
  if (!TOLD.has(message) && level !== 'warn' && level !== 'error') return undefined;
  const reason = str(line['reason']);
  const detail = str(line['detail']);
  if (message === 'transition') {
    const why = isReason(reason) ? ` (${REASON_TEXT[reason]})` : '';
    return (
      `${str(line['from'])} → ${str(line['to'])}: ${reason}${why}` +
      (detail === '' ? '' : `; ${detail}`) +
      (line['epoch'] === null || line['epoch'] === undefined ? '' : `, epoch ${str(line['epoch'])}`)
    );
  }
  const extras = ['reason', 'mac', 'epoch', 'lateByMs', 'error']
    .map((k) => [k, str(line[k])] as const)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k} ${v}`);
  return `${level === 'info' ? '' : `${level}: `}${message}${extras.length > 0 ? ` (${extras.join(', ')})` : ''}`;
}

/** What `node` told in its log within the window, in time order. */
export function storyOf(
  node: string,
  log: readonly Readonly<Record<string, unknown>>[],
  w: Window,
): StoryLine[] {
  const out: StoryLine[] = [];
  for (const line of log) {
    const t = Date.parse(str(line['timestamp']));
    if (!Number.isFinite(t) || t < w.from || t > w.to) continue;
    const text = tell(line);
    if (text !== undefined) out.push({ t, node, text });
  }
  return out;
}

/** Every node's story merged in time order, each line as `+ms node text` from `origin`. */
export function formatStory(stories: readonly StoryLine[][], origin: number): string[] {
  return stories
    .flat()
    .sort((a, b) => a.t - b.t)
    .map(
      (l) =>
        `${`${l.t >= origin ? '+' : ''}${Math.round(l.t - origin)} ms`.padStart(9)}  ${l.node}  ${l.text}`,
    );
}
