/**
 * The peer channel's UDP socket. Datagrams of any size or content may arrive: they go to the channel, which drops
 * and counts what it cannot authenticate. Send errors (no route, a peer's host down) are the network's loss: the
 * receiver's silence is what the channel measures, so they are counted, never thrown.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { PeerSocket } from './channel.js';

/** A heartbeat is at most about 2.5 KB (MAX_GROUPS groups with the longest names); anything larger is not ours. */
const MAX_DATAGRAM = 4096;

export interface UdpOptions {
  /** Address to listen on (the one published in the member record, or 0.0.0.0 / ::). */
  readonly address: string;
  readonly port: number;
  readonly onMessage: (data: Buffer) => void;
  /** An oversized datagram or a send error, for counting. */
  readonly onError?: (what: 'oversized' | 'send-failed', detail?: string) => void;
}

export interface OpenPeerSocket extends PeerSocket {
  readonly port: number;
}

/** Bind the socket; rejects with the OS error (EADDRINUSE, EADDRNOTAVAIL) so join can say which port is taken. */
export function openPeerSocket(opts: UdpOptions): Promise<OpenPeerSocket> {
  const socket: Socket = createSocket({ type: isIPv6(opts.address) ? 'udp6' : 'udp4' });
  return new Promise((resolve, reject) => {
    const onBindError = (e: Error) => {
      socket.close();
      reject(e);
    };
    socket.once('error', onBindError);
    socket.bind(opts.port, opts.address, () => {
      socket.off('error', onBindError);
      socket.on('error', (e) => opts.onError?.('send-failed', e.message));
      socket.on('message', (data) => {
        if (data.length > MAX_DATAGRAM) opts.onError?.('oversized');
        else opts.onMessage(data);
      });
      resolve({
        port: socket.address().port,
        send(data, port, address) {
          socket.send(data, port, address, (e) => {
            if (e) opts.onError?.('send-failed', e.message);
          });
        },
        close() {
          socket.close();
        },
      });
    });
  });
}
