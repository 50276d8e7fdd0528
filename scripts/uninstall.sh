#!/usr/bin/env bash
# Removes what scripts/install.sh installed. Data, logs and the conf stay
# unless --purge is given.
#
#   scripts/uninstall.sh [--prefix DIR] [--destdir DIR] [--purge] [--force]
#
#   --prefix DIR   the prefix given to install.sh (default /usr/local)
#   --destdir DIR  the staging root given to install.sh
#   --purge        also remove /etc/kalmar, /etc/default/kalmar,
#                  /var/lib/kalmar (every mon store and OSD metadata on
#                  this host) and /var/log/kalmar
#   --force        go on although Kalmar units are running
#
# The manifest PREFIX/share/kalmar/install-manifest lists the files to
# remove; nothing else under PREFIX is touched.
set -euo pipefail

PREFIX=/usr/local
DESTDIR=
PURGE=0
FORCE=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --destdir) DESTDIR=${2:?--destdir needs a directory}; shift 2 ;;
    --destdir=*) DESTDIR=${1#*=}; shift ;;
    --purge) PURGE=1; shift ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "uninstall: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PREFIX=${PREFIX%/}
DESTDIR=${DESTDIR%/}
MANIFEST=$PREFIX/share/kalmar/install-manifest
log() { echo "uninstall: $*" >&2; }

[ -f "$DESTDIR$MANIFEST" ] || { log "no $DESTDIR$MANIFEST: nothing installed with --prefix $PREFIX"; exit 1; }

live_system() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
if live_system && ((!FORCE)); then
  running=$(systemctl list-units --state=active --no-legend --plain 'kalmar*' 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
  if [ -n "$running" ]; then
    log "Kalmar units are running: $running"
    log "stop them first (systemctl stop kalmar.target) or pass --force"
    exit 1
  fi
fi

removed=0
while IFS= read -r f; do
  case $f in '' | '#'*) continue ;; esac
  case $f in
    "$PREFIX"/*) ;;
    *) log "skipping $f: not under $PREFIX"; continue ;;
  esac
  if [ -e "$DESTDIR$f" ] || [ -L "$DESTDIR$f" ]; then
    rm -f "$DESTDIR$f"
    removed=$((removed + 1))
  fi
done <"$DESTDIR$MANIFEST"
# Folders the install made, if now empty (deepest first).
for d in "$PREFIX/share/kalmar" "$PREFIX/share/doc/kalmar"; do
  [ -d "$DESTDIR$d" ] && find "$DESTDIR$d" -depth -type d -empty -delete
done
rm -f "$DESTDIR/etc/logrotate.d/kalmar"
log "removed $removed files"

if ((PURGE)); then
  rm -rf "$DESTDIR/etc/kalmar" "$DESTDIR/etc/default/kalmar" "$DESTDIR/var/lib/kalmar" "$DESTDIR/var/log/kalmar"
  log "purged the conf, /var/lib/kalmar and /var/log/kalmar"
else
  log "kept the conf (/etc/kalmar, /etc/default/kalmar), data (/var/lib/kalmar) and logs (/var/log/kalmar); --purge removes them"
fi
if live_system; then
  systemctl daemon-reload || log "systemctl daemon-reload failed; run it yourself"
fi
