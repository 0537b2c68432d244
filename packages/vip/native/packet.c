/*
 * coord_packet: the smallest native piece coord needs to announce a VIP without waiting for a
 * process (arping takes ~1 s to exit), and to probe whether anyone still answers for it. It opens
 * AF_PACKET/SOCK_RAW sockets bound to one interface, sends complete Ethernet frames built in
 * TypeScript, receives frames of one ethertype, and reads an interface's MAC. One more call, unrelated to
 * packets, lives here so that coord has one addon to build: dropPages, which lets a long-running agent give
 * back the runtime's start-up pages (memory.ts).
 * Everything about frame layout and checksums lives in TypeScript, where it is unit-tested.
 *
 * Exports:
 *   open(ifindex: number): number          fd of a packet socket bound to ifindex (protocol 0: never receives)
 *   send(fd: number, frame: Buffer): number bytes sent; non-blocking (MSG_DONTWAIT)
 *   close(fd: number): void
 *   hwaddr(ifname: string): Buffer          6-byte MAC (SIOCGIFHWADDR)
 *   ifindex(ifname: string): number         if_nametoindex, 0 when absent
 *   openRecv(ifindex: number, ethertype: number): number
 *                                           fd of a non-blocking packet socket that receives frames of one
 *                                           ethertype arriving on ifindex, never our own outgoing frames
 *   recv(fd: number): Buffer | null         the next pending frame, null when none is pending (EAGAIN)
 *   nlOpen(): number                        fd of a NETLINK_ROUTE socket for nlRequest (1 s receive timeout)
 *   nlRequest(fd: number, message: Buffer): number
 *                                           send one rtnetlink request (NLM_F_ACK, its seq set) and wait for
 *                                           the kernel's answer to that seq, in this one call: 0 (done) or the
 *                                           errno the kernel refused it with (EEXIST, ...)
 *   nlPort(fd: number): number              the port id of a NETLINK_ROUTE socket, -1 when fd is no such socket
 *   nlIgnoreEchoes(fd: number, port: number): number
 *                                           attach a socket filter to a NETLINK_ROUTE socket that drops the
 *                                           RTM_NEWADDR notifications of requests sent from `port`: 0 or errno
 *   dropPages(start: number, length: number): number
 *                                           madvise(MADV_DONTNEED) on a page-aligned range: 0 or the errno.
 *                                           Only for read-only private mappings of the executable that hold
 *                                           no page of their own (memory.ts chooses them): their pages come
 *                                           back from the page cache on the next touch. On any other mapping
 *                                           it loses data.
 * Errors are thrown as Error with `code` set to the errno name (EPERM, ENODEV, ...).
 *
 * Why a synchronous netlink request next to the netlink library: a VIP add or refresh must reach the kernel
 * before the holder's deadline, which the caller checks just before. The library queues a send that follows
 * another within one event-loop turn and sends it a turn later; a process frozen in between (SIGSTOP, a VM
 * pause) sends it after the deadline, and the kernel re-creates an address that had expired. Here the check,
 * the send and the answer happen in one synchronous call (docs/design.md, "Leaving leadership").
 */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EAGAIN: return "EAGAIN";
    case ENOBUFS: return "ENOBUFS";
    case ENETDOWN: return "ENETDOWN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EMSGSIZE: return "EMSGSIZE";
    case EMFILE: return "EMFILE";
    case ENOMEM: return "ENOMEM";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EINTR: return "EINTR";
    case ENOTSOCK: return "ENOTSOCK";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, strerror(e), errno_name(e));
  napi_throw_error(env, errno_name(e), msg);
  return NULL;
}

static int arg_int(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int32_t *out) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "EINVAL", "missing argument");
    return -1;
  }
  if (napi_get_value_int32(env, argv[0], out) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "first argument must be an integer");
    return -1;
  }
  return 0;
}

static int arg_ifname(napi_env env, napi_callback_info info, char *name) {
  size_t argc = 1, len = 0;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], name, IFNAMSIZ + 1, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "interface name must be a string");
    return -1;
  }
  if (len == 0 || len > IFNAMSIZ - 1) {
    napi_throw_type_error(env, "EINVAL", "interface name must be 1-15 characters");
    return -1;
  }
  return 0;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t ifindex;
  if (arg_int(env, info, 1, argv, &ifindex) != 0) return NULL;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_PACKET)", errno);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind(AF_PACKET)", e);
  }
  napi_create_int32(env, fd, &result);
  return result;
}

/* Arguments (fd: number, data: Buffer) of at least `min` bytes; throws a TypeError naming `usage` otherwise. */
static int arg_fd_buffer(napi_env env, napi_callback_info info, size_t min, const char *usage, int32_t *fd,
                         void **data, size_t *len) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], data, len) != napi_ok || *len < min) {
    napi_throw_type_error(env, "EINVAL", usage);
    return -1;
  }
  return 0;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value result;
  int32_t fd;
  void *data;
  size_t len;
  if (arg_fd_buffer(env, info, 0, "send(fd, buffer)", &fd, &data, &len) != 0) return NULL;
  ssize_t n = send(fd, data, len, MSG_DONTWAIT);
  if (n < 0) return throw_errno(env, "send(AF_PACKET)", errno);
  napi_create_int32(env, (int32_t)n, &result);
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (arg_int(env, info, 1, argv, &fd) != 0) return NULL;
  if (close(fd) != 0) return throw_errno(env, "close", errno);
  return NULL;
}

static napi_value js_hwaddr(napi_env env, napi_callback_info info) {
  char name[IFNAMSIZ + 1];
  if (arg_ifname(env, info, name) != 0) return NULL;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_INET)", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name)); /* length checked ≤ IFNAMSIZ-1; ifr zeroed */
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "ioctl(SIOCGIFHWADDR)", e);
  }
  close(fd);
  napi_value result;
  napi_create_buffer_copy(env, ETH_ALEN, ifr.ifr_hwaddr.sa_data, NULL, &result);
  return result;
}

static napi_value js_ifindex(napi_env env, napi_callback_info info) {
  char name[IFNAMSIZ + 1];
  if (arg_ifname(env, info, name) != 0) return NULL;
  napi_value result;
  napi_create_uint32(env, if_nametoindex(name), &result);
  return result;
}

/*
 * A receiving packet socket. It is created with protocol 0 (receives nothing) and only bound to
 * (ifindex, ethertype) afterwards, so no frame of another interface can slip in between socket() and
 * bind(). Frames this host sends never count as answers: Linux hands outgoing frames only to ETH_P_ALL
 * sockets, PACKET_IGNORE_OUTGOING (Linux 4.20) says so explicitly, and where the kernel refuses that
 * option recv() drops outgoing frames by their sll_pkttype. (A frame the network reflects back arrives
 * as incoming; the caller drops it by its source MAC.)
 */
static napi_value js_open_recv(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t ifindex, ethertype;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &ifindex) != napi_ok ||
      napi_get_value_int32(env, argv[1], &ethertype) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "openRecv(ifindex, ethertype)");
    return NULL;
  }
  if (ifindex <= 0 || ethertype <= 0 || ethertype > 0xffff) {
    napi_throw_range_error(env, "EINVAL", "openRecv: ifindex must be > 0 and ethertype 1-0xffff");
    return NULL;
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_PACKET)", errno);
#ifdef PACKET_IGNORE_OUTGOING
  int one = 1;
  (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one); /* best effort, see recv */
#endif
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons((uint16_t)ethertype);
  sll.sll_ifindex = ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind(AF_PACKET)", e);
  }
  if (ethertype == ETH_P_IPV6) {
    /* Answers to a DAD probe go to all-nodes ff02::1 (RFC 4861 §7.2.4), Ethernet 33:33:00:00:00:01
     * (RFC 2464 §7). A NIC with IPv6 enabled accepts that group already; the membership (dropped when fd
     * is closed) only makes sure, so a refusal is not an error. */
    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = ifindex;
    mr.mr_type = PACKET_MR_MULTICAST;
    mr.mr_alen = ETH_ALEN;
    static const unsigned char all_nodes[ETH_ALEN] = {0x33, 0x33, 0, 0, 0, 1};
    memcpy(mr.mr_address, all_nodes, ETH_ALEN);
    (void)setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
  }
  napi_create_int32(env, fd, &result);
  return result;
}

/* Longest frame kept: a jumbo frame. ARP and neighbour discovery frames are far shorter; anything longer
 * is returned truncated, which the parsers treat like any other frame they do not understand. */
#define RECV_MAX 9216

static napi_value js_recv(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (arg_int(env, info, 1, argv, &fd) != 0) return NULL;
  unsigned char buf[RECV_MAX];
  for (;;) {
    struct sockaddr_ll from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        napi_get_null(env, &result);
        return result;
      }
      return throw_errno(env, "recv(AF_PACKET)", errno);
    }
    if (from.sll_pkttype == PACKET_OUTGOING) continue; /* our own frame (no PACKET_IGNORE_OUTGOING) */
    napi_create_buffer_copy(env, (size_t)n, buf, NULL, &result);
    return result;
  }
}

static napi_value js_nl_open(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return throw_errno(env, "socket(AF_NETLINK)", errno);
  /* The kernel answers an rtnetlink request before sendto returns; the timeout only bounds a lost answer. */
  struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "bind(AF_NETLINK)", e);
  }
  napi_create_int32(env, fd, &result);
  return result;
}

/* Big enough for an error answer that echoes an address request (no NETLINK_CAP_ACK). */
#define NL_RECV_MAX 8192

static napi_value js_nl_request(napi_env env, napi_callback_info info) {
  napi_value result;
  int32_t fd;
  void *data;
  size_t len;
  if (arg_fd_buffer(env, info, sizeof(struct nlmsghdr), "nlRequest(fd, message)", &fd, &data, &len) != 0)
    return NULL;
  uint32_t seq = ((const struct nlmsghdr *)data)->nlmsg_seq;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n;
  do {
    n = sendto(fd, data, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "sendto(AF_NETLINK)", errno);
  unsigned char buf[NL_RECV_MAX];
  for (;;) {
    n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return throw_errno(env, "recv(AF_NETLINK)", ETIMEDOUT);
      return throw_errno(env, "recv(AF_NETLINK)", errno);
    }
    int left = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      /* Anything else is an answer to an earlier request that timed out: skip it. */
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      const struct nlmsgerr *err = (const struct nlmsgerr *)NLMSG_DATA(h);
      napi_create_int32(env, -err->error, &result);
      return result;
    }
  }
}

/* The port id (nl_pid) a NETLINK_ROUTE socket is bound to; -1 for any other fd (or none): never throws on it. */
static napi_value js_nl_port(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (arg_int(env, info, 1, argv, &fd) != 0) return NULL;
  struct sockaddr_nl local;
  socklen_t len = sizeof local;
  int protocol = -1;
  socklen_t plen = sizeof protocol;
  double port = -1;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, (struct sockaddr *)&local, &len) == 0 && len >= sizeof local &&
      local.nl_family == AF_NETLINK && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &plen) == 0 &&
      protocol == NETLINK_ROUTE)
    port = (double)local.nl_pid;
  napi_create_double(env, port, &result);
  return result;
}

/*
 * A notification socket's filter: drop RTM_NEWADDR messages whose nlmsg_pid is `port` (for IPv4 the kernel puts
 * the requesting socket's port there; IPv6 notifications carry 0 and pass), accept everything else. rtnetlink
 * sends one message per notification, so the header at offset 0 is the message's own. Classic BPF loads are
 * big-endian, the header is in host order: hence htons/htonl on the constants. A holder refreshes its VIP's
 * lifetime four times a second at TTL 1 s; without this each refresh woke the agent to parse an address it had
 * just written (docs/design.md, "Footprint: the holder's own notifications").
 */
static napi_value js_nl_ignore_echoes(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  int32_t fd;
  uint32_t port;
  if (arg_int(env, info, 2, argv, &fd) != 0) return NULL;
  if (napi_get_value_uint32(env, argv[1], &port) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "nlIgnoreEchoes(fd, port): port must be a number");
    return NULL;
  }
  struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_type)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_NEWADDR), 0, 3),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_pid)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl(port), 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
  napi_create_int32(env, r == 0 ? 0 : errno, &result);
  return result;
}

/*
 * Unmaps the pages of [start, start + length) from this process (memory.ts, releaseFilePages). Numbers, not
 * BigInts: user-space addresses on x86-64 and arm64 fit in 2^53.
 */
static napi_value js_drop_pages(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  double start, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_double(env, argv[0], &start) != napi_ok ||
      napi_get_value_double(env, argv[1], &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "dropPages(start, length): two numbers");
    return NULL;
  }
  long page = sysconf(_SC_PAGESIZE);
  /* Written so that NaN fails too; whole numbers only, below 2^53, then page-aligned. */
  if (!(start > 0) || !(length > 0) || !(start + length <= 9007199254740992.0) || start != floor(start) ||
      length != floor(length) || (unsigned long)start % page != 0 || (unsigned long)length % page != 0) {
    napi_throw_range_error(env, "EINVAL", "dropPages(start, length): a non-empty page-aligned range");
    return NULL;
  }
  int r = madvise((void *)(unsigned long)start, (size_t)length, MADV_DONTNEED);
  napi_create_int32(env, r == 0 ? 0 : errno, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
    {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
    {"hwaddr", NULL, js_hwaddr, NULL, NULL, NULL, napi_default, NULL},
    {"ifindex", NULL, js_ifindex, NULL, NULL, NULL, napi_default, NULL},
    {"openRecv", NULL, js_open_recv, NULL, NULL, NULL, napi_default, NULL},
    {"recv", NULL, js_recv, NULL, NULL, NULL, napi_default, NULL},
    {"nlOpen", NULL, js_nl_open, NULL, NULL, NULL, napi_default, NULL},
    {"nlRequest", NULL, js_nl_request, NULL, NULL, NULL, napi_default, NULL},
    {"nlPort", NULL, js_nl_port, NULL, NULL, NULL, napi_default, NULL},
    {"nlIgnoreEchoes", NULL, js_nl_ignore_echoes, NULL, NULL, NULL, napi_default, NULL},
    {"dropPages", NULL, js_drop_pages, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
