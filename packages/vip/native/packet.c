/*
 * coord_packet: the smallest native piece coord needs to announce a VIP without waiting for a
 * process (arping takes ~1 s to exit). It opens an AF_PACKET/SOCK_RAW socket bound to one
 * interface, sends a complete Ethernet frame built in TypeScript, and reads an interface's MAC.
 * Everything about frame layout and checksums lives in TypeScript, where it is unit-tested.
 *
 * Exports:
 *   open(ifindex: number): number          fd of a packet socket bound to ifindex (protocol 0: never receives)
 *   send(fd: number, frame: Buffer): number bytes sent; non-blocking (MSG_DONTWAIT)
 *   close(fd: number): void
 *   hwaddr(ifname: string): Buffer          6-byte MAC (SIOCGIFHWADDR)
 *   ifindex(ifname: string): number         if_nametoindex, 0 when absent
 * Errors are thrown as Error with `code` set to the errno name (EPERM, ENODEV, ...).
 */
#include <errno.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netpacket/packet.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd;
  void *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "send(fd, buffer)");
    return NULL;
  }
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
    {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
    {"hwaddr", NULL, js_hwaddr, NULL, NULL, NULL, napi_default, NULL},
    {"ifindex", NULL, js_ifindex, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
