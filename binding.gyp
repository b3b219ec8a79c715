{
  "targets": [
    {
      "target_name": "mtagent_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/io.cc",
        "native/crc32c.cc",
        "native/system.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O3"],
      "cflags": ["-O3"]
    }
  ]
}
