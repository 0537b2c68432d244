/**
 * keepalived statements → a coord node config (docs/migration.md has the table this implements). Pure: the tree
 * in, the config object, a comment per converted block naming its source line, and two lists out — what was not
 * converted (with why) and what was converted but behaves differently enough that the operator should look.
 */
import { ipFamily, NAME_PATTERN, parseCidr } from '@coord/core';
import type { KaNode, SourcePos } from './parse.js';

export interface Finding {
  readonly at: SourcePos;
  readonly what: string;
  readonly why: string;
}

export interface ConvertOptions {
  readonly mode: 'vrrp' | 'etcd';
  /** etcd mode: endpoints and cluster (placeholders, flagged for review, when not given). */
  readonly etcd?: readonly string[];
  readonly cluster?: string;
  /** How a position is shown in comments and findings (e.g. relative to the main file). */
  readonly where: (at: SourcePos) => string;
  /** Why coord would refuse to run a command (it runs them without a shell), or undefined when it would run it. */
  readonly refuseCommand?: (command: string) => string | undefined;
}

export interface Conversion {
  readonly config: Record<string, unknown>;
  /** Comments to put before a key or list item: the path to it and the text. */
  readonly comments: readonly (readonly [readonly (string | number)[], string])[];
  readonly notConverted: readonly Finding[];
  readonly review: readonly Finding[];
  readonly converted: { readonly instances: number; readonly scripts: number };
}

/** keepalived's defaults where they differ from coord's (keepalived.conf(5)). */
const KEEPALIVED = { vrrpVersion: 2, scriptInterval: 1, rise: 1, fall: 1 } as const;

const NO_MAIL = 'coord sends no mail: run a notify hook (notify.any) that does';
const LVS = 'coord drives HAProxy, not LVS: describe the service with coord service set';
const ANNOUNCE =
  'coord sends one burst of announcements when it claims (announce.count × announce.interval) and repeats it every announce.refresh';
const NO_EQUIVALENT = 'coord has no equivalent setting';

/** Top-level blocks coord does not convert, and why. */
const TOP_LEVEL: Readonly<Record<string, string>> = {
  virtual_server: LVS,
  virtual_server_group: LVS,
  static_ipaddress:
    'addresses that are not VIPs belong to the host network config (ifupdown, systemd-networkd)',
  static_routes: 'routes belong to the host network config (ifupdown, systemd-networkd)',
  static_rules: 'routing rules belong to the host network config',
  vrrp_track_file: 'coord tracks commands and interfaces: a track script can test the file',
  track_file: 'coord tracks commands and interfaces: a track script can test the file',
  vrrp_track_process: 'coord tracks commands and interfaces: a track script can run pgrep',
  track_process: 'coord tracks commands and interfaces: a track script can run pgrep',
  bfd_instance: 'coord has no BFD: a track script can check the peer',
  linkbeat_interfaces: 'coord watches links through netlink',
};

/** global_defs keywords coord does not convert, and why. */
const GLOBAL_SKIPPED: Readonly<Record<string, string>> = {
  notification_email: NO_MAIL,
  notification_email_from: NO_MAIL,
  smtp_server: NO_MAIL,
  smtp_connect_timeout: NO_MAIL,
  smtp_helo_name: NO_MAIL,
  smtp_alert: NO_MAIL,
  smtp_alert_vrrp: NO_MAIL,
  smtp_alert_checker: NO_MAIL,
  enable_script_security:
    'coord does not check who owns a script: keep scripts root-owned and not writable by others',
  script_user:
    'coord runs checks and hooks as its own user (the systemd unit: root with limited capabilities)',
  vrrp_strict:
    'coord speaks RFC 3768/5798 as keepalived does by default; strict mode’s extra refusals (no unicast, no authentication, no accept) are not applied',
  vrrp_iptables: 'coord adds no firewall rules',
  vrrp_ipsets: 'coord adds no firewall rules',
  vrrp_nftables: 'coord adds no firewall rules',
  vrrp_mcast_group4: 'coord sends VRRP to the RFC 5798 group 224.0.0.18 (or unicastPeers)',
  vrrp_mcast_group6: 'coord sends VRRP to the RFC 5798 group ff02::12 (or unicastPeers)',
  vrrp_garp_master_delay: ANNOUNCE,
  vrrp_garp_master_refresh_repeat: ANNOUNCE,
  vrrp_garp_lower_prio_delay: ANNOUNCE,
  vrrp_garp_lower_prio_repeat: ANNOUNCE,
  lvs_id: LVS,
  lvs_sync_daemon: LVS,
  lvs_timeouts: LVS,
  lvs_flush: LVS,
  dynamic_interfaces: 'coord waits for a missing interface and logs it; no setting',
};

/** vrrp_instance keywords coord does not convert, and why. */
const INSTANCE_SKIPPED: Readonly<Record<string, string>> = {
  use_vmac: 'coord adds the VIPs to the interface itself; it has no virtual MAC interface (RFC 5798 §7.3)',
  vmac_xmit_base: 'coord adds the VIPs to the interface itself; it has no virtual MAC interface',
  no_accept: 'a coord holder accepts traffic to its VIPs (HAProxy binds them)',
  strict_mode: GLOBAL_SKIPPED['vrrp_strict'] ?? NO_EQUIVALENT,
  smtp_alert: NO_MAIL,
  garp_master_delay: ANNOUNCE,
  garp_master_refresh_repeat: ANNOUNCE,
  garp_lower_prio_delay: ANNOUNCE,
  garp_lower_prio_repeat: ANNOUNCE,
  lvs_sync_daemon_interface: LVS,
  track_file: TOP_LEVEL['track_file'] ?? NO_EQUIVALENT,
  track_process: TOP_LEVEL['track_process'] ?? NO_EQUIVALENT,
  track_bfd: TOP_LEVEL['bfd_instance'] ?? NO_EQUIVALENT,
  virtual_routes: TOP_LEVEL['static_routes'] ?? NO_EQUIVALENT,
  virtual_rules: TOP_LEVEL['static_rules'] ?? NO_EQUIVALENT,
  notify_master_rx_lower_pri: 'coord runs notify.leader once per claim',
  notify_deleted: NO_EQUIVALENT,
  debug: 'coord logs at logLevel (debug for everything)',
};

/** A config value coord accepts as a name, made from a keepalived name. */
function asName(text: string): string {
  const cleaned = text
    .replace(/[^A-Za-z0-9_.-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63)
    .replace(/[^A-Za-z0-9]+$/, '');
  return cleaned === '' ? 'group' : cleaned;
}

interface ScriptDef {
  readonly at: SourcePos;
  readonly command: string | undefined;
  readonly interval: number;
  readonly timeout: number | undefined;
  readonly rise: number;
  readonly fall: number;
  readonly weight: number;
}

interface TrackRef {
  readonly name: string;
  readonly weight: number | undefined;
  readonly at: SourcePos;
}

interface Instance {
  readonly name: string;
  /** The name in keepalived.conf (sync groups refer to it). */
  readonly rawName: string;
  readonly at: SourcePos;
  readonly group: Record<string, unknown>;
  readonly scripts: TrackRef[];
  readonly interfaces: TrackRef[];
  readonly notify: Map<string, { command: string; at: SourcePos }>;
  readonly extraComments: string[];
}

const NOTIFY_KEYS: Readonly<Record<string, string>> = {
  notify_master: 'leader',
  notify_backup: 'follower',
  notify_fault: 'fault',
  notify_stop: 'stop',
  notify: 'any',
};

export function convertKeepalived(nodes: readonly KaNode[], options: ConvertOptions): Conversion {
  const notConverted: Finding[] = [];
  const review: Finding[] = [];
  const skip = (n: KaNode, why: string, what = n.words.join(' ')) =>
    notConverted.push({ at: n.at, what, why });
  const note = (at: SourcePos, what: string, why: string) => review.push({ at, what, why });

  /** A number argument within [min, max] (whole when `int`), or a finding and undefined. */
  const num = (n: KaNode, min: number, max: number, int = true): number | undefined => {
    const text = n.words[1];
    const v = Number(text);
    if (text === undefined || !Number.isFinite(v) || (int && !Number.isInteger(v)) || v < min || v > max) {
      skip(n, `needs ${int ? 'a whole number' : 'a number'} from ${min} to ${max}, got ${text ?? 'nothing'}`);
      return undefined;
    }
    return v;
  };
  const text = (n: KaNode): string | undefined => {
    const v = n.words.slice(1).join(' ');
    if (v === '') skip(n, 'needs a value');
    return v === '' ? undefined : v;
  };
  const block = (n: KaNode): readonly KaNode[] => {
    if (n.children === undefined) skip(n, 'expects a block { … }');
    return n.children ?? [];
  };

  // global_defs: read first (the VRRP version default applies to every instance wherever it is defined).
  let node: { value: string; at: SourcePos } | undefined;
  let defaultVersion: number = KEEPALIVED.vrrpVersion;
  const announce: Record<string, number> = {};
  /** The GARP settings keepalived has globally and per instance, into coord's announce (`into`). */
  const readAnnounce = (n: KaNode, key: string, into: Record<string, number> = announce): boolean => {
    switch (key) {
      case 'vrrp_garp_master_repeat':
      case 'garp_master_repeat': {
        const v = num(n, 1, 10_000);
        if (v !== undefined) {
          if (v > 20)
            note(n.at, n.words.join(' '), 'coord sends at most 20 announcements in a burst: 20 used');
          into['count'] = Math.min(v, 20);
        }
        return true;
      }
      case 'vrrp_garp_interval':
      case 'vrrp_gna_interval':
      case 'garp_interval':
      case 'gna_interval': {
        const v = num(n, 0, 10, false);
        if (v !== undefined) into['interval'] = Math.max(v, 0.01);
        return true;
      }
      case 'vrrp_garp_master_refresh':
      case 'garp_master_refresh': {
        const v = num(n, 0, 3600);
        if (v !== undefined) into['refresh'] = v;
        return true;
      }
      default:
        return false;
    }
  };
  for (const g of nodes.filter((x) => x.words[0] === 'global_defs')) {
    for (const n of block(g)) {
      const key = n.words[0] ?? '';
      if (key === 'router_id') {
        const v = text(n);
        if (v !== undefined) {
          node = { value: asName(v), at: n.at };
          if (!NAME_PATTERN.test(v))
            note(
              n.at,
              n.words.join(' '),
              `a coord node name may hold letters, digits, '.', '_' and '-': "${node.value}" used`,
            );
        }
      } else if (key === 'vrrp_version') {
        const v = num(n, 2, 3);
        if (v !== undefined) defaultVersion = v;
      } else if (readAnnounce(n, key)) continue;
      else skip(n, GLOBAL_SKIPPED[key] ?? 'not known to the importer');
    }
  }

  // vrrp_script definitions (used only where an instance tracks them, as keepalived runs only those).
  const scripts = new Map<string, ScriptDef>();
  for (const s of nodes.filter((x) => x.words[0] === 'vrrp_script')) {
    const name = s.words[1];
    if (name === undefined) {
      skip(s, 'vrrp_script needs a name');
      continue;
    }
    let command: string | undefined;
    let interval: number = KEEPALIVED.scriptInterval;
    let timeout: number | undefined;
    let rise: number = KEEPALIVED.rise;
    let fall: number = KEEPALIVED.fall;
    let weight = 0;
    for (const n of block(s)) {
      switch (n.words[0]) {
        case 'script':
          command = text(n);
          break;
        case 'interval':
          interval = num(n, 0.1, 3600, false) ?? interval;
          break;
        case 'timeout':
          timeout = num(n, 0.1, 600, false) ?? timeout;
          break;
        case 'rise':
          rise = num(n, 1, 100) ?? rise;
          break;
        case 'fall':
          fall = num(n, 1, 100) ?? fall;
          break;
        case 'weight':
          weight = num(n, -254, 254) ?? weight;
          if (n.words[2] === 'reverse') skip(n, 'coord has no reversed weights', 'weight … reverse');
          break;
        case 'user':
          skip(n, GLOBAL_SKIPPED['script_user'] ?? NO_EQUIVALENT);
          break;
        case 'init_fail':
          note(
            n.at,
            'init_fail',
            'a coord check starts failed but one success from healthy (keepalived without init_fail); keepalived with it needed rise successes',
          );
          break;
        case undefined:
        default:
          skip(n, 'not known to the importer');
      }
    }
    if (command === undefined) skip(s, 'vrrp_script has no script line', `vrrp_script ${name}`);
    scripts.set(name, { at: s.at, command, interval, timeout, rise, fall, weight });
  }

  const instances: Instance[] = [];
  for (const s of nodes.filter((x) => x.words[0] === 'vrrp_instance')) {
    const inst = convertInstance(s);
    if (inst !== undefined) instances.push(inst);
  }

  /** One line of track_script / track_interface: `NAME [weight W [reverse]]`. */
  function trackRef(c: KaNode): TrackRef | undefined {
    const [name, w, wv] = c.words;
    if (name === undefined) return undefined;
    if (w === undefined) return { name, weight: undefined, at: c.at };
    if (w !== 'weight') {
      skip(c, 'not known to the importer', c.words.slice(1).join(' '));
      return { name, weight: undefined, at: c.at };
    }
    const weight = Number(wv);
    if (!Number.isInteger(weight) || weight < -254 || weight > 254) {
      skip(c, `weight must be a whole number from -254 to 254, got ${wv ?? 'nothing'}`);
      return undefined;
    }
    if (c.words[3] === 'reverse') skip(c, 'coord has no reversed weights', `${name} weight … reverse`);
    return { name, weight, at: c.at };
  }

  function convertInstance(s: KaNode): Instance | undefined {
    const rawName = s.words[1];
    if (rawName === undefined) {
      skip(s, 'vrrp_instance needs a name');
      return undefined;
    }
    const name = asName(rawName);
    if (name !== rawName)
      note(
        s.at,
        `vrrp_instance ${rawName}`,
        `a coord group name may hold letters, digits, '.', '_' and '-': "${name}" used`,
      );
    const inst: Instance = {
      name,
      rawName,
      at: s.at,
      group: { name },
      scripts: [],
      interfaces: [],
      notify: new Map(),
      extraComments: [],
    };
    const g = inst.group;
    let iface: string | undefined;
    let version = defaultVersion;
    interface VipLine {
      readonly cidr: string;
      readonly dev: string | undefined;
      readonly n: KaNode;
    }
    const vips: VipLine[] = [];
    const excluded: VipLine[] = [];
    let trackPrimary = true;
    let srcAt: SourcePos | undefined;
    let auth: { type?: string | undefined; pass?: string; at: SourcePos } | undefined;
    const instanceAnnounce: Record<string, number> = {};

    const readVip = (n: KaNode, into: VipLine[]) => {
      const [addr, ...opts] = n.words;
      if (addr === undefined) return;
      const family = ipFamily(addr.split('/')[0] ?? '');
      const cidr = addr.includes('/') ? addr : family === 6 ? `${addr}/128` : `${addr}/32`;
      const r = parseCidr(cidr);
      if (!r.ok) {
        skip(n, `not a VIP coord can use: ${r.reason}`);
        return;
      }
      let dev: string | undefined;
      for (let i = 0; i < opts.length; i++) {
        const o = opts[i] ?? '';
        const arg = opts[i + 1];
        if (o === 'dev' && arg !== undefined) {
          dev = arg;
          i++;
        } else if (['brd', 'broadcast', 'scope', 'label', 'preferred_lft', 'track_group'].includes(o)) {
          skip(
            n,
            'coord adds VIPs with the kernel’s defaults for this option',
            `${addr} ${o} ${arg ?? ''}`.trim(),
          );
          i++;
        } else if (o === 'no_track')
          skip(n, 'every coord VIP is watched; one removed behind its back is put back', `${addr} no_track`);
        else skip(n, 'not known to the importer', `${addr} ${o}`);
      }
      into.push({ cidr, dev, n });
    };

    for (const n of block(s)) {
      const key = n.words[0] ?? '';
      switch (key) {
        case 'interface':
          iface = n.words[1];
          if (iface === undefined) skip(n, 'needs an interface name');
          else g['interface'] = iface;
          break;
        case 'virtual_router_id': {
          const v = num(n, 1, 255);
          if (v !== undefined) g['vrid'] = v;
          break;
        }
        case 'priority': {
          const v = num(n, 1, 255);
          if (v !== undefined) g['priority'] = v;
          break;
        }
        case 'state':
          if (n.words[1] === 'MASTER')
            inst.extraComments.push(
              'state MASTER: coord starts as backup and takes the group by priority (as keepalived once adverts are heard)',
            );
          else if (n.words[1] !== 'BACKUP') skip(n, 'state is MASTER or BACKUP');
          break;
        case 'nopreempt':
          g['preempt'] = false;
          break;
        case 'preempt':
          g['preempt'] = true;
          break;
        case 'preempt_delay': {
          const v = num(n, 0, 1000, false);
          if (v !== undefined) g['preemptDelay'] = v;
          break;
        }
        case 'advert_int': {
          const v = num(n, 0.01, 255, false);
          if (v !== undefined) g['advertInt'] = v;
          break;
        }
        case 'version': {
          const v = num(n, 2, 3);
          if (v !== undefined) version = v;
          break;
        }
        case 'virtual_ipaddress':
          for (const c of block(n)) readVip(c, vips);
          break;
        case 'virtual_ipaddress_excluded':
          for (const c of block(n)) readVip(c, excluded);
          break;
        case 'unicast_peer': {
          const peers: string[] = [];
          for (const c of block(n)) {
            const ip = c.words[0] ?? '';
            if (ipFamily(ip) === undefined) skip(c, 'not an IP address');
            else {
              peers.push(ip);
              if (c.words.length > 1) skip(c, NO_EQUIVALENT, c.words.slice(1).join(' '));
            }
          }
          if (peers.length > 0) g['unicastPeers'] = peers;
          break;
        }
        case 'unicast_src_ip':
        case 'mcast_src_ip': {
          const ip = n.words[1] ?? '';
          if (ipFamily(ip) === undefined) skip(n, 'not an IP address');
          else {
            g['unicastSrc'] = ip;
            srcAt = n.at;
          }
          break;
        }
        case 'authentication':
          auth = { at: n.at };
          for (const c of block(n)) {
            if (c.words[0] === 'auth_type') auth.type = c.words[1];
            else if (c.words[0] === 'auth_pass') auth.pass = c.words.slice(1).join(' ');
            else skip(c, 'not known to the importer');
          }
          break;
        case 'track_script':
          for (const c of block(n)) {
            const ref = trackRef(c);
            if (ref !== undefined) inst.scripts.push(ref);
          }
          break;
        case 'track_interface':
          for (const c of block(n)) {
            const ref = trackRef(c);
            // keepalived's weight 0 on an interface is the same as none: down means FAULT.
            if (ref !== undefined)
              inst.interfaces.push(ref.weight === 0 ? { ...ref, weight: undefined } : ref);
          }
          break;
        case 'dont_track_primary':
          trackPrimary = false;
          break;
        case 'accept':
          break; // coord's holder accepts traffic for its VIPs.
        case 'notify_master':
        case 'notify_backup':
        case 'notify_fault':
        case 'notify_stop':
        case 'notify': {
          const v = text(n);
          if (v !== undefined) inst.notify.set(NOTIFY_KEYS[key] ?? key, { command: v, at: n.at });
          break;
        }
        default:
          if (!readAnnounce(n, key, instanceAnnounce))
            skip(n, INSTANCE_SKIPPED[key] ?? 'not known to the importer');
      }
    }

    if (iface === undefined) {
      skip(s, 'a vrrp_instance needs an interface: not converted', `vrrp_instance ${rawName}`);
      return undefined;
    }
    const onIface = (list: readonly VipLine[]): string[] =>
      list.flatMap((v) => {
        if (v.dev === undefined || v.dev === iface) return [v.cidr];
        skip(
          v.n,
          `on ${v.dev}, not the instance's ${iface ?? ''}: coord adds a group's VIPs to its interface; make it a group of its own`,
        );
        return [];
      });
    const ownVips = onIface(vips);
    const ownExcluded = onIface(excluded);
    if (options.mode === 'etcd') g['vips'] = [...ownVips, ...ownExcluded];
    else {
      g['vips'] = ownVips;
      if (ownExcluded.length > 0)
        for (const c of s.children?.filter((x) => x.words[0] === 'virtual_ipaddress_excluded') ?? [])
          skip(
            c,
            'coord’s VRRP mode advertises every VIP of a group; use --mode etcd, or list them in virtual_ipaddress',
            'virtual_ipaddress_excluded',
          );
    }
    if ((g['vips'] as string[]).length === 0) {
      skip(s, 'a vrrp_instance with no VIP on its interface: not converted', `vrrp_instance ${rawName}`);
      return undefined;
    }
    if (trackPrimary) inst.interfaces.push({ name: iface, weight: undefined, at: s.at });

    // The VRRPv2 password keepalived sends: the first 8 bytes (RFC 3768 §5.3.6.1).
    let authPass: string | undefined;
    if (auth !== undefined) {
      if (auth.type === 'PASS' && auth.pass !== undefined && auth.pass !== '') {
        if (version !== 2)
          skip({ words: ['authentication'], at: auth.at }, 'VRRPv3 has no authentication (RFC 5798 §9)');
        else {
          const bytes = Buffer.from(auth.pass, 'utf8');
          if (bytes.length > 8)
            note(
              auth.at,
              'auth_pass',
              'longer than 8 bytes: keepalived sends the first 8, and so does the converted value',
            );
          authPass = bytes.subarray(0, 8).toString('utf8');
        }
      } else
        skip(
          { words: ['authentication'], at: auth.at },
          'only auth_type PASS with an auth_pass converts (AH is not supported)',
        );
    }
    if (options.mode === 'vrrp') {
      if (g['vrid'] === undefined) {
        skip(s, 'a vrrp_instance needs virtual_router_id: not converted', `vrrp_instance ${rawName}`);
        return undefined;
      }
      g['vrrpVersion'] = version;
      if (authPass !== undefined) g['authPass'] = authPass;
    } else {
      // Etcd mode keeps the VRRP settings in a vrrp block: the hybrid mode, so keepalived nodes still in the
      // cluster stay BACKUP (docs/design.md, "Hybrid mode"); drop it once none is left.
      const vrid = g['vrid'];
      const hybrid: Record<string, unknown> = {
        vrid,
        priority: 254,
        advertInt: g['advertInt'] ?? 1,
        version,
        ...(g['unicastPeers'] === undefined ? {} : { unicastPeers: g['unicastPeers'] }),
        ...(authPass === undefined ? {} : { authPass }),
      };
      for (const k of ['vrid', 'advertInt', 'unicastPeers', 'unicastSrc']) delete g[k];
      if (srcAt !== undefined)
        note(
          srcAt,
          'unicast_src_ip',
          'the hybrid adverts come from the interface’s first address, as in VRRP mode',
        );
      if (vrid === undefined)
        inst.extraComments.push('no virtual_router_id: no vrrp block (hybrid mode) written');
      else if (ownExcluded.length > 0)
        skip(
          s,
          'the hybrid adverts would list the excluded addresses too, which the keepalived nodes would not accept: no vrrp block written (add one by hand, or migrate in VRRP mode first)',
          'vrrp block',
        );
      else {
        g['vrrp'] = hybrid;
        inst.extraComments.push(
          'vrrp: hybrid mode while keepalived nodes remain (priority 254 keeps them BACKUP); delete it once none is left',
        );
      }
      if (g['priority'] === 255) {
        g['priority'] = 254;
        note(s.at, 'priority 255', 'etcd mode tops out at 254 (255 means "address owner" in VRRP): 254 used');
      }
    }
    // An instance's own GARP settings over the global ones, as keepalived takes them.
    const garp = { ...announce, ...instanceAnnounce };
    if (Object.keys(garp).length > 0) g['announce'] = garp;
    // The keys in the order coord's own examples use.
    const order = ['name', 'interface', 'vips', 'priority', 'preempt', 'preemptDelay', 'vrid', 'vrrpVersion'];
    const sorted = Object.fromEntries(
      [...order.filter((k) => k in g), ...Object.keys(g).filter((k) => !order.includes(k))].map((k) => [
        k,
        g[k],
      ]),
    );
    return { ...inst, group: sorted };
  }

  // vrrp_sync_group → syncGroup on each member: the groups keep one holder and move together.
  for (const sg of nodes.filter((x) => x.words[0] === 'vrrp_sync_group')) {
    const rawName = sg.words[1];
    if (rawName === undefined) {
      skip(sg, 'vrrp_sync_group needs a name');
      continue;
    }
    const name = asName(rawName);
    for (const n of block(sg)) {
      if (n.words[0] !== 'group') {
        skip(
          n,
          n.words[0]?.startsWith('notify') === true
            ? 'coord runs its hooks per group (notify.*): a sync group has none of its own'
            : 'not known to the importer',
        );
        continue;
      }
      for (const member of block(n)) {
        const ref = member.words[0] ?? '';
        const inst = instances.find((i) => i.rawName === ref);
        if (inst === undefined) {
          skip(member, `no converted vrrp_instance ${ref}: not in sync group ${name}`);
          continue;
        }
        const prior = inst.group['syncGroup'] as string | undefined;
        if (prior !== undefined && prior !== name)
          skip(member, `${ref} is already in sync group ${prior}: an instance belongs to one`);
        else inst.group['syncGroup'] = name;
      }
    }
  }
  const handled = new Set(['global_defs', 'vrrp_script', 'vrrp_instance', 'vrrp_sync_group']);
  for (const n of nodes) {
    const key = n.words[0] ?? '';
    if (!handled.has(key))
      skip(n, TOP_LEVEL[key] ?? 'not known to the importer', n.words.slice(0, 2).join(' '));
  }

  // Node-wide parts: coord's checks and hooks apply to every group of the node.
  const trackScripts: Record<string, unknown>[] = [];
  const usedScripts = new Map<string, TrackRef>();
  const scriptSources: SourcePos[] = [];
  for (const inst of instances)
    for (const ref of inst.scripts) {
      const def = scripts.get(ref.name);
      if (def === undefined) {
        skip({ words: [ref.name], at: ref.at }, 'no vrrp_script of that name (keepalived ignores it too)');
        continue;
      }
      const weight = ref.weight ?? def.weight;
      const prior = usedScripts.get(ref.name);
      if (prior !== undefined) {
        if ((prior.weight ?? 0) !== weight)
          note(
            ref.at,
            `${ref.name} weight ${weight}`,
            `another instance tracks it with weight ${prior.weight ?? 0}: coord has one weight per check; ${prior.weight ?? 0} used`,
          );
        continue;
      }
      usedScripts.set(ref.name, { name: ref.name, weight, at: ref.at });
      if (def.command === undefined) continue;
      const refused = options.refuseCommand?.(def.command);
      if (refused !== undefined) {
        skip({ words: ['vrrp_script', ref.name], at: def.at }, `${refused}: left out`);
        continue;
      }
      scriptSources.push(def.at);
      const t: Record<string, unknown> = {
        name: asName(ref.name),
        command: def.command,
        interval: def.interval,
        timeout: Math.min(def.timeout ?? def.interval, 600),
        rise: def.rise,
        fall: def.fall,
      };
      if (weight !== 0) t['weight'] = weight;
      trackScripts.push(t);
    }
  for (const name of scripts.keys())
    if (!usedScripts.has(name)) {
      const def = scripts.get(name);
      if (def !== undefined)
        skip(
          { words: ['vrrp_script', name], at: def.at },
          'no vrrp_instance tracks it (keepalived does not run it either)',
        );
    }
  const trackInterfaces = new Map<string, TrackRef>();
  for (const inst of instances)
    for (const ref of inst.interfaces) {
      const prior = trackInterfaces.get(ref.name);
      if (prior === undefined) trackInterfaces.set(ref.name, ref);
      else if (prior.weight !== ref.weight)
        note(
          ref.at,
          `track_interface ${ref.name}`,
          'tracked with different weights by different instances: the first is used',
        );
    }
  if (instances.length > 1) {
    const sets = instances.map((i) => [...new Set(i.scripts.map((r) => r.name))].sort().join(','));
    if (new Set(sets).size > 1)
      note(
        instances[0]?.at ?? { file: '', line: 0 },
        'track_script',
        'instances track different scripts; coord applies every check to every group of the node',
      );
  }

  const notify: Record<string, string> = {};
  for (const key of ['leader', 'follower', 'fault', 'stop', 'any']) {
    const uses = instances.flatMap((i) => {
      const u = i.notify.get(key);
      return u === undefined ? [] : [u];
    });
    const first = uses[0];
    if (first === undefined) continue;
    const refused = options.refuseCommand?.(first.command);
    if (refused !== undefined) {
      notConverted.push({ at: first.at, what: first.command, why: `${refused}: left out` });
      continue;
    }
    notify[key] = first.command;
    for (const u of uses.slice(1))
      if (u.command !== first.command)
        notConverted.push({
          at: u.at,
          what: u.command,
          why: `coord has one notify.${key} for every group: the one at ${options.where(first.at)} is used`,
        });
    if (uses.length < instances.length)
      note(
        first.at,
        first.command,
        `coord runs notify.${key} for every group, also those whose instance had none (COORD_GROUP names the group)`,
      );
    if (key === 'any')
      note(
        first.at,
        first.command,
        'keepalived passed INSTANCE NAME STATE PRIORITY as arguments; coord sets COORD_GROUP, COORD_STATE (leader, follower, fault, stop) and more in the environment instead',
      );
  }

  // The config, keys in the order an operator reads them.
  const config: Record<string, unknown> = { mode: options.mode };
  const comments: [(string | number)[], string][] = [];
  if (options.mode === 'etcd') {
    config['etcd'] = options.etcd ?? ['http://127.0.0.1:2379'];
    config['cluster'] = options.cluster ?? 'main';
    if (options.etcd === undefined)
      comments.push([['etcd'], ' REVIEW: the endpoints of your etcd cluster (coord import --etcd URL)']);
    if (options.cluster === undefined)
      comments.push([
        ['cluster'],
        ' REVIEW: one name per cluster, the same on every node (coord import --cluster NAME)',
      ]);
  }
  if (node !== undefined) {
    config['node'] = node.value;
    comments.push([['node'], ` router_id (${options.where(node.at)})`]);
  } else comments.push([['groups'], ' no router_id: the node name is the host name']);
  config['groups'] = instances.map((i) => i.group);
  instances.forEach((inst, idx) =>
    comments.push([
      ['groups', idx],
      [
        ` vrrp_instance ${inst.name} (${options.where(inst.at)})`,
        ...inst.extraComments.map((c) => ` ${c}`),
      ].join('\n'),
    ]),
  );
  if (trackScripts.length > 0 || trackInterfaces.size > 0) {
    config['track'] = {
      ...(trackScripts.length > 0 ? { scripts: trackScripts } : {}),
      ...(trackInterfaces.size > 0
        ? {
            interfaces: [...trackInterfaces.values()].map((r) => ({
              name: r.name,
              ...(r.weight === undefined ? {} : { weight: r.weight }),
            })),
          }
        : {}),
    };
    trackScripts.forEach((t, idx) => {
      const at = scriptSources[idx];
      if (at !== undefined)
        comments.push([
          ['track', 'scripts', idx],
          ` vrrp_script ${String(t['name'])} (${options.where(at)})`,
        ]);
    });
    if (trackInterfaces.size > 0)
      comments.push([
        ['track', 'interfaces'],
        ' track_interface, and each instance interface unless dont_track_primary (keepalived: FAULT when it goes down)',
      ]);
  }
  if (Object.keys(notify).length > 0) {
    config['notify'] = notify;
    comments.push([
      ['notify'],
      ' notify_master → leader, notify_backup → follower, notify_fault → fault, notify_stop → stop, notify → any',
    ]);
  }
  if (instances.length === 0)
    notConverted.push({
      at: nodes[0]?.at ?? { file: '', line: 1 },
      what: 'vrrp_instance',
      why: 'no vrrp_instance was converted: a coord config needs at least one group',
    });
  return {
    config,
    comments,
    notConverted,
    review,
    converted: { instances: instances.length, scripts: trackScripts.length },
  };
}
