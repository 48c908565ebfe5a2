#!/bin/sh
# Install the Debian packages libelm needs to build and test, as root, only
# those that are missing. Safe to run repeatedly.
set -eu
need=""
for p in build-essential meson ninja-build pkg-config libblis-pthread-dev libyaml-dev zlib1g-dev \
         libcmocka-dev libhdf5-dev python3 python3-numpy python3-pytest python3-h5py python3-brian locales \
         dataset-fashion-mnist; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages:$need (run as root, or install them)" >&2
        exit 1
    fi
    echo "installing:$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# A locale with a decimal comma, so that the YAML test can check that a
# host program's locale never changes how numbers read or print.
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
    if [ "$(id -u)" = 0 ]; then
        localedef -i de_DE -f UTF-8 de_DE.UTF-8 2>/dev/null || echo "note: could not generate de_DE.UTF-8; the locale test will skip"
    fi
fi
