import { isIPv4, isIPv6 } from 'node:net';

/** Address family as the rest of coord speaks it. */
export type Family = 4 | 6;

/** A virtual IP with the prefix length it is added with. `address` is canonical (RFC 5952 for IPv6). */
export interface Vip {
  readonly address: string;
  readonly prefix: number;
  readonly family: Family;
}

/** `10.0.0.50/24` → `{ address, prefix, family }`, or a reason it is not one. */
export function parseCidr(text: string): { ok: true; vip: Vip } | { ok: false; reason: string } {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  if (slash < 0) return { ok: false, reason: `"${text}" has no prefix length (write it as ADDRESS/PREFIX)` };
  const addr = trimmed.slice(0, slash);
  const prefixText = trimmed.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) return { ok: false, reason: `"${prefixText}" is not a prefix length` };
  const prefix = Number(prefixText);
  if (isIPv4(addr)) {
    if (prefix < 1 || prefix > 32) return { ok: false, reason: `IPv4 prefix must be 1-32, got ${prefix}` };
    return { ok: true, vip: { address: bytesToIp(ipToBytes(addr)), prefix, family: 4 } };
  }
  if (isIPv6(addr)) {
    if (prefix < 1 || prefix > 128) return { ok: false, reason: `IPv6 prefix must be 1-128, got ${prefix}` };
    return { ok: true, vip: { address: bytesToIp(ipToBytes(addr)), prefix, family: 6 } };
  }
  return { ok: false, reason: `"${addr}" is not an IPv4 or IPv6 address` };
}

export function formatCidr(vip: Vip): string {
  return `${vip.address}/${vip.prefix}`;
}

/** 4 or 16 network-order bytes of an address; throws on a string that is not an IP address. */
export function ipToBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  if (!isIPv6(addr)) throw new TypeError(`not an IP address: ${addr}`);
  let text = addr;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const b = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${(((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16)}:${(((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16)}`;
  }
  const [head, rest] = text.split('::', 2) as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Inverse of {@link ipToBytes}; IPv6 in RFC 5952 canonical form. */
export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new TypeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // Longest run of two or more zero groups becomes "::" (first one wins a tie).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}
