#!/bin/sh
# Install into a scratch root and build the embedding example with nothing
# but `pkg-config --cflags --libs elm`, then run it.
set -eu
build=$1
src=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
meson install -C "$build" --destdir "$root" --no-rebuild --quiet >/dev/null
pcdir=$(dirname "$(find "$root" -name elm.pc | head -n 1)")
export PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs elm)
echo "pkg-config: $flags"
cc -std=c11 -o "$root/stream" "$src/examples/stream.c" $flags -lm
libdir=$(dirname "$(find "$root" -name 'libelm.so.0' | head -n 1)")
LD_LIBRARY_PATH="$libdir" "$root/stream" --steps 200
