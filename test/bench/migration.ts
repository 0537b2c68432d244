/**
 * `pnpm bench:migration [--runs 3] [--advert-int 1] [--out bench/results/migration.json]`: the migration of
 * docs/migration.md (test/migration.ts) run end to end, `--runs` times, each in a fresh lab: a keepalived restart
 * first as the baseline, then the nine steps. Prints each step's figures per run and, per step, the median and the
 * maximum over the runs; writes every run's records as JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Lab } from '../lab/index.js';
import { assertBuilt } from '../coord.js';
import { Migration, type StepResult } from '../migration.js';
import type { MigrationResults } from './figures.js';
import { envelopeOf, RESULTS_DIR } from './results.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'advert-int': { type: 'string', default: '1' },
    out: { type: 'string', default: join(RESULTS_DIR, 'migration.json') },
  },
});
const runs = Number(values.runs);
const advertInt = Number(values['advert-int']);
assertBuilt();
const started = Date.now();
const startLoad = loadavg()[0] ?? 0;
const all: StepResult[][] = [];
let failed = 0;
for (let r = 1; r <= runs; r++) {
  console.log(`run ${r}/${runs} (advert_int ${advertInt} s)`);
  const lab = await Lab.create({ hosts: 3, name: 'migration' });
  const m = new Migration(lab, { advertInt, log: (l) => console.log(`  ${l}`) });
  try {
    await m.start();
    all.push(await m.runAll());
  } catch (e) {
    failed++;
    console.log(`  run failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await m.stop();
    await lab.destroy();
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)] ?? NaN);
};
const steps = (all[0] ?? []).map((s, i) => {
  const cells = all.map((run) => run[i]).filter((x): x is StepResult => x !== undefined);
  const pick = (f: (x: StepResult) => number) => cells.map(f);
  return {
    step: s.step,
    kind: s.kind,
    arpGapMs: {
      median: median(pick((x) => x.arpGapMs ?? 0)),
      max: Math.max(...pick((x) => x.arpGapMs ?? 0)),
    },
    httpGapMs: { median: median(pick((x) => x.httpGapMs)), max: Math.max(...pick((x) => x.httpGapMs)) },
    httpFailed: pick((x) => x.httpFailed).reduce((a, b) => a + b, 0),
    httpFailedOutsideMoves: pick((x) => x.httpFailedOutsideMoves).reduce((a, b) => a + b, 0),
    httpTotal: pick((x) => x.httpFailed + x.httpOk).reduce((a, b) => a + b, 0),
    twoHolderMsMax: Math.max(...pick((x) => x.twoHolderMs)),
  };
});
console.log(`\nper step over ${all.length} run(s): median / max`);
console.log(
  'step                                ARP gap ms     HTTP gap ms    failed HTTP   two holders ms (max)',
);
for (const s of steps)
  console.log(
    `${s.step.padEnd(35)} ${`${Math.round(s.arpGapMs.median)} / ${Math.round(s.arpGapMs.max)}`.padStart(11)}  ${`${s.httpGapMs.median} / ${s.httpGapMs.max}`.padStart(13)}  ${`${s.httpFailed}/${s.httpTotal} (${s.httpFailedOutsideMoves})`.padStart(28)}   ${s.twoHolderMsMax.toFixed(1)}`,
  );
// The README's migration table is generated from this file (test/bench/figures.ts).
const out = {
  ...envelopeOf('migration', started, startLoad),
  rounds: { requested: runs, total: runs, failed },
  advertInt,
  steps,
  runs: all,
} satisfies MigrationResults & { runs: StepResult[][] };
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, `${JSON.stringify(out, null, 2)}\n`);
console.log(`\nwrote ${values.out}`);
