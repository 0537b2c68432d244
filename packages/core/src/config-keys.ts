/**
 * The keys of the config file, read from its schema: coord.yaml(5) documents them (cli/manpages.ts) and a config
 * error about a key that does not exist suggests the nearest one that does.
 */
/** One documented key of the config file. */
export interface ConfigKey {
  readonly path: string;
  readonly type: string;
  readonly description: string | undefined;
}

interface Def {
  type: string;
  shape?: Record<string, Schema>;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  element?: Schema;
  entries?: Record<string, string>;
  values?: unknown[];
  options?: Schema[];
}
interface Schema {
  _zod: { def: Def };
  description?: string;
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'catch', 'readonly', 'nonoptional']);

/** Unwrap a field to its core schema, keeping the first description met on the way. */
function unwrap(t: Schema): { core: Schema; description: string | undefined } {
  let cur = t;
  let description = t.description;
  for (;;) {
    const def = cur._zod.def;
    let next: Schema | undefined;
    if (WRAPPERS.has(def.type)) next = def.innerType;
    else if (def.type === 'pipe') next = def.in?._zod.def.type === 'transform' ? def.out : def.in;
    if (next === undefined) return { core: cur, description };
    cur = next;
    description ??= cur.description;
  }
}

function typeName(t: Schema): string {
  const def = t._zod.def;
  switch (def.type) {
    case 'enum':
      return Object.values(def.entries ?? {}).join(' | ');
    case 'union':
      return [...new Set((def.options ?? []).map((o) => typeName(unwrap(o).core)))].join(' | ');
    case 'literal':
      return (def.values ?? []).map(String).join(' | ');
    case 'array':
      return def.element === undefined ? 'list' : `list of ${typeName(unwrap(def.element).core)}`;
    case 'object':
      return 'mapping';
    case 'unknown':
      return 'any';
    default:
      return def.type;
  }
}

/** Every key of a config schema (nested mappings and lists of mappings included), with its description. */
export function configKeys(schema: unknown): ConfigKey[] {
  const out: ConfigKey[] = [];
  const walk = (t: Schema, path: string): void => {
    const def = t._zod.def;
    if (def.type === 'object') {
      for (const [k, v] of Object.entries(def.shape ?? {})) {
        const { core, description } = unwrap(v);
        const p = path === '' ? k : `${path}.${k}`;
        out.push({ path: p, type: typeName(core), description });
        const cdef = core._zod.def;
        if (cdef.type === 'object') walk(core, p);
        if (cdef.type === 'array' && cdef.element !== undefined) {
          const el = unwrap(cdef.element).core;
          if (el._zod.def.type === 'object') walk(el, `${p}[]`);
        }
        // `etcd` is a list of URLs or a mapping: document the mapping.
        if (cdef.type === 'pipe') walk(unwrap(cdef.out ?? core).core, p);
      }
    }
  };
  walk(unwrap(schema as Schema).core, '');
  return out;
}
