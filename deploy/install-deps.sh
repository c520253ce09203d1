#!/usr/bin/env bash
# Installs the Debian packages cgalpha needs to build, test and run. Idempotent: does nothing
# when everything is there. Needs root (or sudo) only when something is missing.
#   deploy/install-deps.sh          build and run
#   deploy/install-deps.sh --test   also what only the tests use (headless Chromium for the
#                                   dashboard test, util-linux's script for the tty test)
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang libclang-rt-dev
      libhiredis-dev libuv1-dev libmsgpack-dev libsqlite3-dev libmicrohttpd-dev libcmocka-dev
      redis-server redis-tools sqlite3)
case "${1:-}" in
    --test) PKGS+=(chromium fonts-dejavu-core bsdutils) ;;
    "") ;;
    *) echo "install-deps: unknown option '$1' (use --test or nothing)" >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
