import { describe, expect, it } from 'vitest';
import { CoordError } from '@coord/core';
import { hintFor, netlinkErrno, toCoordError } from '../src/errors.js';

describe('netlinkErrno', () => {
  it('reads the errno name out of the netlink package rejection (docs/design.md)', () => {
    expect(netlinkErrno(new Error('Request rejected: EEXIST'))).toBe('EEXIST');
    expect(netlinkErrno(new Error('Request rejected: EADDRNOTAVAIL'))).toBe('EADDRNOTAVAIL');
  });

  it('reads an errno `code` (native addon, Node system errors) and ignores anything else', () => {
    expect(netlinkErrno(Object.assign(new Error('x'), { code: 'EPERM' }))).toBe('EPERM');
    expect(netlinkErrno(new Error('Multipart message not terminated properly'))).toBeUndefined();
    expect(netlinkErrno(Object.assign(new Error('x'), { code: 'ERR_COORD_NETLINK' }))).toBeUndefined();
    expect(netlinkErrno(undefined)).toBeUndefined();
  });
});

describe('toCoordError', () => {
  it('maps EPERM to ERR_COORD_NETLINK with a root / CAP_NET_ADMIN hint and keeps the cause', () => {
    const cause = new Error('Request rejected: EPERM');
    const e = toCoordError(cause, { op: 'add address', iface: 'eth0', address: '10.0.0.5/32' });
    expect(e).toBeInstanceOf(CoordError);
    expect(e.code).toBe('ERR_COORD_NETLINK');
    expect(e.exitCode).toBe(6);
    expect(e.message).toBe('netlink add address failed for 10.0.0.5/32 on eth0: EPERM');
    expect(e.hint).toMatch(/root.*CAP_NET_ADMIN/);
    expect(e.cause).toBe(cause);
    expect(e.details).toMatchObject({ op: 'add address', iface: 'eth0', errno: 'EPERM' });
  });

  it('names the interface when it is missing', () => {
    const e = toCoordError(new Error('Request rejected: ENODEV'), { op: 'get link', iface: 'bond7' });
    expect(e.hint).toContain('"bond7"');
  });

  it('passes a CoordError through unchanged', () => {
    const original = new CoordError('ERR_COORD_NETLINK', 'x');
    expect(toCoordError(original, { op: 'y', iface: 'z' })).toBe(original);
  });

  it('has a hint for every errno, falling back to a generic one', () => {
    for (const errno of [
      'EPERM',
      'EACCES',
      'ENODEV',
      'ENETDOWN',
      'EINVAL',
      'EADDRNOTAVAIL',
      'EWHATEVER',
      undefined,
    ]) {
      expect(hintFor(errno, 'eth0').length).toBeGreaterThan(10);
    }
  });
});
