{
  "targets": [
    {
      "target_name": "coord_vrrp6",
      "sources": ["native/vrrp6.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
