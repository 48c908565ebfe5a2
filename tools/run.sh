#!/bin/sh
# The main job (README, first command): install what is missing, build
# libelm, then train an ELM neuron on sequential Fashion-MNIST (each image
# read row by row, 28 steps of 28 pixels) with progress per epoch and the
# final TEST accuracy: 89.85% after ~45 s of training on 2 cores (each
# batch split over two threads where the machine has two cores).
# Arguments go to the trainer, e.g. `sh tools/run.sh --epochs 3`,
# `sh tools/run.sh --threads 1` or `sh tools/run.sh --quick`; see
# examples/train_fashion_mnist.c.
set -eu
cd "$(dirname "$0")/.."
sh tools/install-deps.sh
if [ ! -f build/build.ninja ]; then
    echo "configuring build/ (meson, release) ..."
    meson setup build --buildtype=release >/dev/null
fi
echo "building libelm and the example ..."
ninja -C build examples/train_fashion_mnist >/dev/null
# A later --threads on the command line overrides this one.
if [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then set -- --threads 2 "$@"; fi
exec ./build/examples/train_fashion_mnist "$@"
