/*
 * coord_vrrp6: the receive side raw-socket cannot do for VRRPv3 over IPv6 (RFC 5798). An AF_INET6 raw socket
 * never hands the IPv6 header to user space, so the hop limit (the §7.1 on-link check) and the destination
 * address (the checksum's pseudo-header) come from recvmsg ancillary data. Everything about the VRRP message
 * itself (checksum included) stays in TypeScript, where it is unit-tested; the kernel computes no checksum
 * (IPV6_CHECKSUM is not set).
 *
 * Exports:
 *   open(ifindex: number): number   fd of an AF_INET6/SOCK_RAW/112 socket bound to the interface
 *                                    (SO_BINDTODEVICE), joined to ff02::12 there, hop limit 255,
 *                                    traffic class 0xc0, no multicast loop, IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO on
 *   receive(fd, cb): void            start a uv_poll on fd; cb({ payload, src, dst, hopLimit, ifindex })
 *                                    per datagram (src/dst: 16-byte Buffers)
 *   send(fd, dst: Buffer(16), payload: Buffer, src: Buffer(16), ifindex): number
 *                                    sendmsg with IPV6_PKTINFO (source address and interface)
 *   close(fd): void                  stop the poll (if any) and close the fd
 *   ifindex(ifname: string): number  if_nametoindex(3), 0 when absent
 * Errors are thrown as Error with `code` set to the errno name (EPERM, ENODEV, ...).
 */
#define _GNU_SOURCE /* struct in6_pktinfo, IPV6_RECVPKTINFO (RFC 3542) */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define VRRP_PROTOCOL 112
#define VRRP_HOP_LIMIT 255
#define MAX_DATAGRAM 2048
/* RFC 2474 class selector 6, as keepalived sends (and as the IPv4 transport sets IP_TOS). */
#define TCLASS_INTERNETWORK_CONTROL 0xc0

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EAGAIN: return "EAGAIN";
    case ENOBUFS: return "ENOBUFS";
    case ENETDOWN: return "ENETDOWN";
    case ENETUNREACH: return "ENETUNREACH";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EMSGSIZE: return "EMSGSIZE";
    case EMFILE: return "EMFILE";
    case EBUSY: return "EBUSY";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, strerror(e), errno_name(e));
  napi_throw_error(env, errno_name(e), msg);
  return NULL;
}

/* One receiving socket: a uv_poll and the JS callback. Kept in a list so close(fd) can find it. */
typedef struct poller {
  uv_poll_t handle;
  int fd;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  struct poller *next;
} poller;

static poller *pollers = NULL;

static poller *find_poller(int fd) {
  for (poller *p = pollers; p != NULL; p = p->next)
    if (p->fd == fd) return p;
  return NULL;
}

static void unlink_poller(poller *victim) {
  for (poller **pp = &pollers; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == victim) {
      *pp = victim->next;
      return;
    }
  }
}

/* The fd is closed only once libuv has let go of it (closing a polled fd is not allowed). */
static void free_poller(uv_handle_t *handle) {
  poller *p = (poller *)handle->data;
  if (p->fd >= 0) close(p->fd);
  free(p);
}

static void stop_poller(poller *p) {
  unlink_poller(p);
  uv_poll_stop(&p->handle);
  napi_delete_reference(p->env, p->callback);
  napi_async_destroy(p->env, p->context);
  p->handle.data = p;
  uv_close((uv_handle_t *)&p->handle, free_poller);
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t ifindex;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      get_int(env, argv[0], &ifindex) != 0 || ifindex <= 0) {
    napi_throw_type_error(env, "EINVAL", "open(ifindex): ifindex must be a positive integer");
    return NULL;
  }
  char ifname[IF_NAMESIZE];
  if (if_indextoname((unsigned)ifindex, ifname) == NULL) return throw_errno(env, "if_indextoname", errno);

  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, VRRP_PROTOCOL);
  if (fd < 0) return throw_errno(env, "socket(AF_INET6, SOCK_RAW, 112)", errno);
  const int on = 1, off = 0, hops = VRRP_HOP_LIMIT, tclass = TCLASS_INTERNETWORK_CONTROL;
  struct ipv6_mreq mreq;
  memset(&mreq, 0, sizeof mreq);
  mreq.ipv6mr_multiaddr.s6_addr[0] = 0xff;
  mreq.ipv6mr_multiaddr.s6_addr[1] = 0x02;
  mreq.ipv6mr_multiaddr.s6_addr[15] = 0x12;
  mreq.ipv6mr_interface = (unsigned)ifindex;
  const char *what = NULL;
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname) + 1) != 0)
    what = "SO_BINDTODEVICE";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on) != 0)
    what = "IPV6_RECVHOPLIMIT";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) != 0)
    what = "IPV6_RECVPKTINFO";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) != 0)
    what = "IPV6_MULTICAST_HOPS";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) != 0)
    what = "IPV6_UNICAST_HOPS";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tclass, sizeof tclass) != 0)
    what = "IPV6_TCLASS";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) != 0)
    what = "IPV6_MULTICAST_IF";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &off, sizeof off) != 0)
    what = "IPV6_MULTICAST_LOOP";
  else if (setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0)
    what = "IPV6_ADD_MEMBERSHIP ff02::12";
  if (what != NULL) {
    int e = errno;
    close(fd);
    return throw_errno(env, what, e);
  }
  napi_create_int32(env, fd, &result);
  return result;
}

static void set_named(napi_env env, napi_value obj, const char *name, napi_value v) {
  napi_set_named_property(env, obj, name, v);
}

/* Drain the socket: one JS call per datagram. Runs on the loop thread, outside any JS frame. */
static void on_readable(uv_poll_t *handle, int status, int events) {
  poller *p = (poller *)handle->data;
  (void)events;
  if (status < 0) return;
  napi_env env = p->env;
  for (int i = 0; i < 64; i++) {
    unsigned char data[MAX_DATAGRAM];
    union {
      struct cmsghdr align;
      char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(int)) + 64];
    } control;
    struct sockaddr_in6 from;
    struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(p->fd, &msg, MSG_DONTWAIT);
    if (n < 0) return; /* EAGAIN: drained; anything else: try again on the next wake-up */
    if (msg.msg_flags & MSG_TRUNC) continue; /* larger than any VRRP advert: not ours */
    int hop_limit = -1;
    int have_dst = 0;
    struct in6_pktinfo pktinfo;
    memset(&pktinfo, 0, sizeof pktinfo);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != IPPROTO_IPV6) continue;
      if (c->cmsg_type == IPV6_HOPLIMIT && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        memcpy(&hop_limit, CMSG_DATA(c), sizeof(int));
      } else if (c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof pktinfo)) {
        memcpy(&pktinfo, CMSG_DATA(c), sizeof pktinfo);
        have_dst = 1;
      }
    }
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value obj, v, cb, global, ignored;
    napi_create_object(env, &obj);
    napi_create_buffer_copy(env, (size_t)n, data, NULL, &v);
    set_named(env, obj, "payload", v);
    napi_create_buffer_copy(env, 16, from.sin6_addr.s6_addr, NULL, &v);
    set_named(env, obj, "src", v);
    if (have_dst) {
      napi_create_buffer_copy(env, 16, pktinfo.ipi6_addr.s6_addr, NULL, &v);
    } else {
      napi_get_undefined(env, &v);
    }
    set_named(env, obj, "dst", v);
    napi_create_int32(env, hop_limit, &v);
    set_named(env, obj, "hopLimit", v);
    napi_create_int32(env, have_dst ? (int32_t)pktinfo.ipi6_ifindex : 0, &v);
    set_named(env, obj, "ifindex", v);
    napi_get_reference_value(env, p->callback, &cb);
    napi_get_global(env, &global);
    int fd = p->fd;
    napi_status s = napi_make_callback(env, p->context, global, cb, 1, &obj, &ignored);
    if (s == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
    napi_close_handle_scope(env, scope);
    /* The callback may have closed the socket. */
    if (find_poller(fd) != p) return;
  }
}

static napi_value js_receive(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], name;
  int32_t fd;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      get_int(env, argv[0], &fd) != 0 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "EINVAL", "receive(fd, callback)");
    return NULL;
  }
  if (find_poller(fd) != NULL) return throw_errno(env, "receive: already receiving on this fd", EBUSY);
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, "EUNKNOWN", "no event loop");
    return NULL;
  }
  poller *p = calloc(1, sizeof *p);
  if (p == NULL) return throw_errno(env, "receive", ENOMEM);
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r != 0) {
    free(p);
    napi_throw_error(env, "EUNKNOWN", uv_strerror(r));
    return NULL;
  }
  p->fd = fd;
  p->env = env;
  p->handle.data = p;
  napi_create_reference(env, argv[1], 1, &p->callback);
  napi_create_string_utf8(env, "coord_vrrp6", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &p->context);
  r = uv_poll_start(&p->handle, UV_READABLE, on_readable);
  if (r != 0) {
    napi_delete_reference(env, p->callback);
    napi_async_destroy(env, p->context);
    p->fd = -1; /* the caller still owns the fd */
    uv_close((uv_handle_t *)&p->handle, free_poller);
    napi_throw_error(env, "EUNKNOWN", uv_strerror(r));
    return NULL;
  }
  p->next = pollers;
  pollers = p;
  return NULL;
}

static int get_addr(napi_env env, napi_value v, struct in6_addr *out) {
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok || len != 16) return -1;
  memcpy(out->s6_addr, data, 16);
  return 0;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  int32_t fd, ifindex;
  struct in6_addr dst, src;
  void *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      get_int(env, argv[0], &fd) != 0 || get_addr(env, argv[1], &dst) != 0 ||
      napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok || get_addr(env, argv[3], &src) != 0 ||
      get_int(env, argv[4], &ifindex) != 0) {
    napi_throw_type_error(env, "EINVAL", "send(fd, dst: Buffer(16), payload: Buffer, src: Buffer(16), ifindex)");
    return NULL;
  }
  struct sockaddr_in6 to;
  memset(&to, 0, sizeof to);
  to.sin6_family = AF_INET6;
  to.sin6_addr = dst;
  to.sin6_scope_id = (uint32_t)ifindex; /* needed for link-local/multicast destinations, ignored otherwise */
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
  } control;
  memset(&control, 0, sizeof control);
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
  struct in6_pktinfo pi;
  memset(&pi, 0, sizeof pi);
  pi.ipi6_addr = src; /* the source the checksum was computed over */
  pi.ipi6_ifindex = (unsigned)ifindex;
  memcpy(CMSG_DATA(c), &pi, sizeof pi);
  ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0) return throw_errno(env, "sendmsg(AF_INET6, 112)", errno);
  napi_create_int32(env, (int32_t)n, &result);
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      get_int(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "EINVAL", "close(fd)");
    return NULL;
  }
  poller *p = find_poller(fd);
  if (p != NULL) {
    stop_poller(p); /* closes the fd in the uv_close callback */
    return NULL;
  }
  if (close(fd) != 0) return throw_errno(env, "close", errno);
  return NULL;
}

static napi_value js_ifindex(napi_env env, napi_callback_info info) {
  size_t argc = 1, len = 0;
  napi_value argv[1], result;
  char name[IF_NAMESIZE + 1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || len == 0 ||
      len >= IF_NAMESIZE) {
    napi_throw_type_error(env, "EINVAL", "ifindex(ifname): a name of 1-15 characters");
    return NULL;
  }
  napi_create_uint32(env, if_nametoindex(name), &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"receive", NULL, js_receive, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"ifindex", NULL, js_ifindex, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
