#!/usr/bin/env bash
# Installs what building, testing and benchmarking Kalmar need on a Debian
# machine, skipping what is already there. Safe to run again.
set -euo pipefail

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
for p in build-essential pkg-config clang libclang-dev python3 python3-dev libpython3-dev \
         fio qemu-utils libnbd-bin nbdkit sysstat util-linux prometheus; do
  have_pkg "$p" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; installing the stable toolchain with rustup" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# The test command checks formatting and lints.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >&2
  done
fi
