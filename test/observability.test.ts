/**
 * What deploy/ ships for monitoring: the Prometheus alert rules pass `promtool check rules` and their
 * own unit tests (`promtool test rules`: each alert fires on the series it is about, and not before its `for:`),
 * and the rules and the Grafana dashboard use only metrics coord exports — a renamed metric would silently
 * leave an alert that never fires.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { Metrics } from '@coord/agent';

const DEPLOY = fileURLToPath(new URL('../deploy/', import.meta.url));
const RULES = `${DEPLOY}prometheus/coord-alerts.yml`;
const RULE_TESTS = `${DEPLOY}prometheus/coord-alerts.test.yml`;
const DASHBOARD = `${DEPLOY}grafana/coord-dashboard.json`;

/** coord_* metric names an expression refers to (histogram series reduced to their metric). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bcoord_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

async function exported(): Promise<Set<string>> {
  const metrics = await new Metrics().registry.getMetricsAsJSON();
  return new Set(metrics.map((m) => m.name));
}

/** Every `expr:` of the rules file (one line each there). */
function ruleExprs(): string[] {
  return [...readFileSync(RULES, 'utf8').matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1] ?? '');
}

describe('deploy/prometheus and deploy/grafana', () => {
  it('promtool accepts the alert rules', async () => {
    const r = await execa('promtool', ['check', 'rules', RULES], { reject: false });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: 9 rules found/);
  });

  it("the alerts fire on the series they are about, and only after their 'for:' (promtool test rules)", async () => {
    const r = await execa('promtool', ['test', 'rules', RULE_TESTS], { reject: false });
    expect(r.stdout + r.stderr).toMatch(/SUCCESS/);
    expect(r.exitCode).toBe(0);
  });

  it('the rules and the dashboard use only metrics coord exports', async () => {
    const names = await exported();
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const dashExprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(dashboard.panels.length).toBeGreaterThan(5);
    for (const expr of [...ruleExprs(), ...dashExprs]) {
      const used = metricsIn(expr);
      expect(used.length, expr).toBeGreaterThan(0);
      for (const m of used) expect(names, `${m} in ${expr}`).toContain(m);
    }
  });
});
