#!/bin/sh
# Install the Debian packages libelm needs to build and test, as root, only
# those that are missing. Safe to run repeatedly.
set -eu
need=""
for p in build-essential meson ninja-build pkg-config libblis-pthread-dev libyaml-dev \
         libcmocka-dev python3 python3-numpy python3-pytest; do
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
