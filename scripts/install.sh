#!/usr/bin/env bash
# Installs Kalmar on this host: the binaries on PATH, a manual page for
# each (man 8 kalmar-osd), the mgr's Python plugins where kalmar-mgr finds
# them without flags, the systemd units, a commented default conf, the
# data and log folders and a logrotate file.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--bin-dir DIR] [--no-build]
#
#   --prefix DIR   where binaries (DIR/bin), manual pages
#                  (DIR/share/man/man8), plugins (DIR/share/kalmar), docs
#                  (DIR/share/doc/kalmar) and units (DIR/lib/systemd/system)
#                  go (default /usr/local)
#   --destdir DIR  stage everything under DIR instead of / (packaging,
#                  tests); nothing is started or reloaded then
#   --bin-dir DIR  take the binaries from DIR (default: this checkout's
#                  release build, built first unless --no-build)
#   --no-build     do not run cargo; the binaries must already be built
#
# Under sudo the build is root's (~root/.cache/kalmar-target); to install
# what you built as yourself: sudo scripts/install.sh --bin-dir
# ~/.cache/kalmar-target/release.
#
# Fixed paths, as Ceph's: /etc/kalmar/kalmar.conf (kept if it exists; the
# new default goes beside it as kalmar.conf.dist), /etc/default/kalmar,
# /etc/logrotate.d/kalmar, /var/lib/kalmar/{mon,mgr,osd,crash,objectstore},
# /var/log/kalmar. Everything installed outside /etc and /var is listed in
# PREFIX/share/kalmar/install-manifest, which scripts/uninstall.sh reads.
# Safe to run again (an upgrade: binaries and units are replaced, the conf
# and data are left alone).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/usr/local
DESTDIR=
BIN_DIR=
BUILD=1
log() { echo "install: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
    --destdir=*) DESTDIR=${1#*=}; shift ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
    --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $PREFIX in /*) ;; *) echo "install: --prefix must be an absolute path, got $PREFIX" >&2; exit 2 ;; esac
PREFIX=${PREFIX%/}
[ -n "$DESTDIR" ] && DESTDIR=$(mkdir -p "$DESTDIR" && cd "$DESTDIR" && pwd)

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  log "installing into / needs root: sudo scripts/install.sh (or --destdir DIR to stage)"
  exit 1
fi

# The daemons and tools users run; benchmark helpers stay in the build.
BINARIES=(kalmar kalmar-mon kalmar-mgr kalmar-osd kalmar-nbd kalmar-objectstore-tool)
BINDIR=$PREFIX/bin
SHAREDIR=$PREFIX/share/kalmar
DOCDIR=$PREFIX/share/doc/kalmar
UNITDIR=$PREFIX/lib/systemd/system
MANDIR=$PREFIX/share/man/man8
MANIFEST=$SHAREDIR/install-manifest

if [ -z "$BIN_DIR" ]; then
  if ((BUILD)); then
    # The test command's build: after scripts/test.sh this compiles nothing.
    scripts/setup.sh
    . scripts/env.sh
    log "building the release binaries"
    cargo build --release --workspace --bins >&2
  else
    . scripts/env.sh
  fi
  BIN_DIR=$CARGO_TARGET_DIR/release
fi
for b in "${BINARIES[@]}"; do
  [ -x "$BIN_DIR/$b" ] || { log "$BIN_DIR/$b is missing: build first (cargo build --release --workspace --bins)"; exit 1; }
done

INSTALLED=()
put() { # mode source destination (a path under PREFIX, listed in the manifest)
  install -D -m "$1" "$2" "$DESTDIR$3"
  INSTALLED+=("$3")
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for b in "${BINARIES[@]}"; do put 0755 "$BIN_DIR/$b" "$BINDIR/$b"; done

# A manual page per binary, made by the binary from its own flags and
# subcommands (`BIN --man-page`), so it never disagrees with --help.
# Section 8 (administration), as Ceph files ceph(8) and ceph-osd(8).
for b in "${BINARIES[@]}"; do
  if ! "$BIN_DIR/$b" --man-page >"$WORK/$b.8" || [ ! -s "$WORK/$b.8" ]; then
    log "$BIN_DIR/$b --man-page gave no manual page: is it a build of this checkout?"
    exit 1
  fi
  put 0644 "$WORK/$b.8" "$MANDIR/$b.8"
done

# kalmar-mgr looks for PREFIX/share/kalmar/mgr-modules beside its own
# PREFIX/bin (mgr-py/src/config.rs: shipped_modules_dir).
while IFS= read -r -d '' f; do
  put 0644 "$f" "$SHAREDIR/mgr-modules/${f#mgr-py/modules/}"
done < <(find mgr-py/modules -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z)

put 0644 README.md "$DOCDIR/README.md"
for f in docs/*.md; do put 0644 "$f" "$DOCDIR/${f#docs/}"; done

mkdir -p "$WORK/units"
for f in dist/systemd/*; do
  unit=$(basename "$f")
  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" "$f" >"$WORK/units/$unit"
  put 0644 "$WORK/units/$unit" "$UNITDIR/$unit"
done

# Conf files: never overwrite what an admin may have edited.
conf_file() { # source destination
  if [ -e "$DESTDIR$2" ] && ! cmp -s "$1" "$DESTDIR$2"; then
    install -D -m 0644 "$1" "$DESTDIR$2.dist"
    log "kept $2 (yours); the new default is $2.dist"
  else
    install -D -m 0644 "$1" "$DESTDIR$2"
  fi
}
conf_file dist/kalmar.conf /etc/kalmar/kalmar.conf
conf_file dist/default /etc/default/kalmar
install -D -m 0644 dist/logrotate/kalmar "$DESTDIR/etc/logrotate.d/kalmar"

for d in /var/lib/kalmar /var/lib/kalmar/mon /var/lib/kalmar/mgr /var/lib/kalmar/osd \
         /var/lib/kalmar/crash /var/lib/kalmar/objectstore /var/log/kalmar; do
  install -d -m 0750 "$DESTDIR$d"
done

mkdir -p "$DESTDIR$SHAREDIR"
{
  echo "# Installed by scripts/install.sh (prefix $PREFIX); scripts/uninstall.sh removes these."
  printf '%s\n' "${INSTALLED[@]}" "$MANIFEST"
} >"$DESTDIR$MANIFEST"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload || log "systemctl daemon-reload failed; run it yourself"
fi
log "installed ${#INSTALLED[@]} files under $DESTDIR$PREFIX, conf in $DESTDIR/etc/kalmar, data in $DESTDIR/var/lib/kalmar"
case ":$PATH:" in *":$BINDIR:"*) ;; *) [ -z "$DESTDIR" ] && log "note: $BINDIR is not on your PATH" ;; esac
