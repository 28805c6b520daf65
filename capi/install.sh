#!/usr/bin/env bash
# Installs the C library (static and shared), its header and pkg-config files
# under a prefix:
#
#   cargo build --release -p batchput && capi/install.sh /usr/local
#   cargo build -p batchput && capi/install.sh "$HOME/.local" debug
#   capi/install.sh /opt/batchput path/to/dir/with/the/libs
#
# Then link a program with the shared library or the static one:
#   cc app.c $(pkg-config --cflags --libs batchput)
#   cc app.c $(pkg-config --cflags --libs batchput-static)
# (PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" when the prefix is not a system
# one). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:?usage: capi/install.sh PREFIX [release|debug|LIBDIR]}
profile=${2:-release}
case "$profile" in
  */*) libdir=$profile ;;
  *) libdir="${CARGO_TARGET_DIR:-target}/$profile" ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

for f in libbatchput.a libbatchput.so; do
  if [ ! -f "$libdir/$f" ]; then
    echo "no $libdir/$f: build the library with cargo first" >&2
    exit 1
  fi
done
install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 0644 include/batchput.h "$prefix/include/batchput.h"
install -m 0644 "$libdir/libbatchput.a" "$prefix/lib/libbatchput.a"
install -m 0755 "$libdir/libbatchput.so" "$prefix/lib/libbatchput.so"
for pc in batchput batchput-static; do
  sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "capi/$pc.pc.in" \
    > "$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed batchput $version from $libdir under $prefix"
