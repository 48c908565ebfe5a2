#!/bin/sh
# The main job (README, first command): build libelm and stream the
# NeuronIO Branch-ELM step by step.
set -eu
cd "$(dirname "$0")/.."
sh tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec ./build/examples/stream "$@"
