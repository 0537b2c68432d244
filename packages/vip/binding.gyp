{
  "targets": [
    {
      "target_name": "coord_packet",
      "sources": ["native/packet.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
