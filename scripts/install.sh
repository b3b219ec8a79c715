#!/usr/bin/env bash
# mtagent installer, in the manner of ApplyCustomChanges: every step checks
# first and changes only what differs, so a second run changes nothing.
#
#   scripts/install.sh [--root DIR] [--dry-run] [--no-systemctl]
#                      [--install-dir /opt/mtagent] [--config-dir /etc/mtagent]
#                      [--data-dir /var/lib/mtagent] [--retention /mnt/retention]
#                      [--sysfs-root /]
#
# --root DIR installs into a directory tree instead of / (tests, images);
# --dry-run prints the plan and writes nothing; --sysfs-root reads the disks
# from another tree, as `mtagent disks --sysfs-root` does (tests). Exit 0 when
# installed (with warnings printed), 1 when a step failed, 2 on bad usage.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=/
DRY=0
SYSTEMCTL=1
INSTALL_DIR=/opt/mtagent
CONFIG_DIR=/etc/mtagent
DATA_DIR=/var/lib/mtagent
RETENTION=/mnt/retention
SYSFS_ROOT=/
# A release carries the Node.js runtime its addon was built against; a clone uses the one on the PATH.
if [ -x "$SRC/runtime/node" ]; then NODE="$SRC/runtime/node"; RELEASE=1
else NODE="$(command -v node || true)"; RELEASE=0
fi

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root takes a directory}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --no-systemctl) SYSTEMCTL=0; shift ;;
    --install-dir) INSTALL_DIR="$2"; shift 2 ;;
    --config-dir) CONFIG_DIR="$2"; shift 2 ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --retention) RETENTION="$2"; shift 2 ;;
    --sysfs-root) SYSFS_ROOT="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

CHANGES=0
WARNINGS=0
r() { printf '%s%s' "${ROOT%/}" "$1"; }             # a path as seen under --root
say() { printf '%-9s %s\n' "[$1]" "$2"; }
warn() { say warn "$1"; WARNINGS=$((WARNINGS + 1)); }
# act DESCRIPTION COMMAND...: run (or, with --dry-run, only say) a change.
act() {
  local what="$1"; shift
  CHANGES=$((CHANGES + 1))
  if [ "$DRY" = 1 ]; then say would "$what"; else "$@"; say change "$what"; fi
}

[ -n "$NODE" ] || { echo "install.sh: node is not installed (Node.js 20 is needed), and this is not a release tree with its own runtime" >&2; exit 1; }
[ -f "$SRC/dist/src/cli/main.js" ] || { echo "install.sh: $SRC is not built: run npm install first" >&2; exit 1; }
MTAGENT=("$NODE" "$SRC/dist/src/cli/main.js")

# 1. The operating system and the packages a master target needs.
if [ -r /etc/os-release ]; then
  . /etc/os-release
  case "${ID:-}:${VERSION_ID:-}" in
    debian:11|debian:12|debian:13|ubuntu:2[0-9].*|rhel:[89]*|rocky:[89]*|almalinux:[89]*) say ok "operating system ${PRETTY_NAME:-$ID}" ;;
    *) warn "operating system ${PRETTY_NAME:-unknown} is not one mtagent is tested on (Debian 11-13, Ubuntu 20.04+, RHEL 8/9)" ;;
  esac
fi
node_major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] && say ok "node $("$NODE" --version)" || warn "node $("$NODE" --version) is too old: mtagent needs Node.js 20"
missing=()
for pkg in xfsprogs lsscsi rsync kexec-tools; do
  if command -v dpkg >/dev/null 2>&1; then dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  elif command -v rpm >/dev/null 2>&1; then rpm -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then say ok "packages xfsprogs lsscsi rsync kexec-tools"
elif command -v apt-get >/dev/null 2>&1; then warn "missing packages: ${missing[*]} (install: apt-get install -y ${missing[*]})"
else warn "missing packages: ${missing[*]} (install: dnf install -y ${missing[*]})"
fi

# 2. The service user.
if [ "$ROOT" = / ]; then
  if id mtagent >/dev/null 2>&1; then say ok "user mtagent"
  else act "create system user mtagent (group disk for the target devices)" useradd --system --user-group --groups disk --home-dir "$DATA_DIR" --shell /usr/sbin/nologin mtagent
  fi
else
  if grep -qs '^mtagent:' "$(r /etc/passwd)"; then say ok "user mtagent"
  else
    act "create system user mtagent in $(r /etc/passwd)" sh -c "mkdir -p '$(r /etc)' && echo 'mtagent:x:977:977:mtagent replication agent:$DATA_DIR:/usr/sbin/nologin' >> '$(r /etc/passwd)' && echo 'mtagent:x:977:' >> '$(r /etc/group)'"
  fi
fi

# 3. Folders.
for spec in "$INSTALL_DIR:0755" "$CONFIG_DIR:0750" "$DATA_DIR:0750" "$DATA_DIR/datastore:0750" "$RETENTION:0750"; do
  dir="${spec%%:*}"; mode="${spec##*:}"
  if [ -d "$(r "$dir")" ]; then say ok "folder $dir"
  else act "create folder $dir (mode $mode)" install -d -m "$mode" "$(r "$dir")"
  fi
  if [ "$ROOT" = / ] && [ "$dir" != "$INSTALL_DIR" ] && [ "$DRY" = 0 ] && id mtagent >/dev/null 2>&1 && [ "$(stat -c %U "$dir")" != mtagent ]; then
    act "give $dir to mtagent" chown mtagent:mtagent "$dir"
  fi
done

# 4. The application files, and the command on the PATH.
plan="$("$NODE" "$SRC/dist/scripts/sync-app.js" --from "$SRC" --to "$(r "$INSTALL_DIR")" --dry-run)"   # "N of M files would change"
differ="${plan%% *}"; total="${plan#* of }"; total="${total%% *}"
if [ "$differ" = 0 ]; then say ok "application in $INSTALL_DIR ($total files, as in this release)"
elif [ "$differ" = "$total" ]; then act "install the application in $INSTALL_DIR ($total files)" "$NODE" "$SRC/dist/scripts/sync-app.js" --from "$SRC" --to "$(r "$INSTALL_DIR")"
else act "update the application in $INSTALL_DIR ($differ of $total files differ)" "$NODE" "$SRC/dist/scripts/sync-app.js" --from "$SRC" --to "$(r "$INSTALL_DIR")"
fi
# A release brings its own bin/mtagent and runtime, copied with the application; a clone gets a wrapper for the node it found.
if [ "$RELEASE" = 1 ]; then
  RUN_NODE="$INSTALL_DIR/runtime/node"
else
  RUN_NODE="$NODE"
  wrapper="#!/bin/sh
exec $NODE --initial-old-space-size=64 $INSTALL_DIR/dist/src/cli/main.js \"\$@\""
  if [ -f "$(r "$INSTALL_DIR/bin/mtagent")" ] && [ "$(cat "$(r "$INSTALL_DIR/bin/mtagent")")" = "$wrapper" ]; then say ok "command $INSTALL_DIR/bin/mtagent"
  else act "write the command $INSTALL_DIR/bin/mtagent" sh -c "mkdir -p '$(r "$INSTALL_DIR/bin")' && printf '%s\n' '$wrapper' > '$(r "$INSTALL_DIR/bin/mtagent")' && chmod 0755 '$(r "$INSTALL_DIR/bin/mtagent")'"
  fi
fi
if [ "$(readlink "$(r /usr/local/bin/mtagent)" 2>/dev/null || true)" = "$INSTALL_DIR/bin/mtagent" ]; then say ok "link /usr/local/bin/mtagent"
else act "link /usr/local/bin/mtagent" sh -c "mkdir -p '$(r /usr/local/bin)' && ln -sfn '$INSTALL_DIR/bin/mtagent' '$(r /usr/local/bin/mtagent)'"
fi

# 5. The configuration: made once, never overwritten.
if [ -f "$(r "$CONFIG_DIR/agent.yaml")" ]; then say ok "configuration $CONFIG_DIR/agent.yaml (kept as it is)"
else
  act "make the configuration in $CONFIG_DIR (certificate, passphrase)" "${MTAGENT[@]}" init --dir "$(r "$CONFIG_DIR")" --no-sample-pairs --data-dir "$DATA_DIR" --retention "$RETENTION" --listen-host 0.0.0.0
fi
# The service runs as mtagent: what it reads and writes is its own, the files
# made above as root included (their modes stay as narrow as they were made).
if [ "$ROOT" = / ] && [ "$DRY" = 0 ] && id mtagent >/dev/null 2>&1; then
  for dir in "$CONFIG_DIR" "$DATA_DIR" "$RETENTION"; do
    if [ -n "$(find "$dir" \( ! -user mtagent -o ! -group mtagent \) -print -quit 2>/dev/null)" ]; then
      act "give the files in $dir to mtagent" chown -R mtagent:mtagent "$dir"
    fi
  done
fi

# 6. The retention volume's rules and the disks' SCSI ids: reported, not changed.
if [ "$DRY" = 0 ] || [ -d "$(r "$RETENTION")" ]; then
  if out="$("${MTAGENT[@]}" check-retention "$(r "$RETENTION")" 2>&1)"; then say ok "retention volume $RETENTION passes every rule"
  else warn "retention volume $RETENTION fails a rule (mount a dedicated ext4/xfs volume there):"; echo "$out" | grep FAIL | sed 's/^/          /'
  fi
fi
# The verdict is `mtagent disks`'s own (its exit code), so the two never disagree.
if out="$("${MTAGENT[@]}" disks --sysfs-root "$SYSFS_ROOT" 2>&1)"; then
  if [ "$("${MTAGENT[@]}" disks --sysfs-root "$SYSFS_ROOT" --json 2>/dev/null)" = "[]" ]; then warn "no SCSI disks found (mtagent disks lists none): attach the target disks"
  else say ok "every disk has a stable SCSI id"
  fi
else warn "disks without a stable SCSI id (set disk.EnableUUID=TRUE on the VM):"; printf '%s\n' "$out" | sed 's/^/          /'
fi

# 7. The systemd unit.
unit="$(sed -e "s#@NODE@#$RUN_NODE#g" -e "s#@INSTALL_DIR@#$INSTALL_DIR#g" -e "s#@CONFIG@#$CONFIG_DIR/agent.yaml#g" -e "s#@CONFIG_DIR@#$CONFIG_DIR#g" \
  -e "s#@DATA_DIR@#$DATA_DIR#g" -e "s#@RETENTION@#$RETENTION#g" -e "s#@DATASTORE@#$DATA_DIR/datastore#g" "$SRC/scripts/mtagent.service")"
unit_path="$(r /etc/systemd/system/mtagent.service)"
if [ -f "$unit_path" ] && [ "$(cat "$unit_path")" = "$unit" ]; then say ok "systemd unit /etc/systemd/system/mtagent.service"
else
  act "install the systemd unit /etc/systemd/system/mtagent.service" sh -c "mkdir -p '$(dirname "$unit_path")' && printf '%s\n' \"\$1\" > '$unit_path'" sh "$unit"
  unit_changed=1
fi
if [ "$ROOT" = / ] && [ "$SYSTEMCTL" = 1 ]; then
  if ! command -v systemctl >/dev/null 2>&1; then
    warn "systemctl not found: the unit is installed but not enabled (start mtagent with your service manager)"
  elif [ ! -d /run/systemd/system ]; then
    # An image build or a container: systemctl is there, systemd does not run.
    warn "systemd is not running here: the unit is installed but not enabled; once it runs: systemctl daemon-reload && systemctl enable --now mtagent"
  else
    [ "${unit_changed:-0}" = 1 ] && act "reload systemd" systemctl daemon-reload
    if systemctl is-enabled --quiet mtagent.service 2>/dev/null; then say ok "unit mtagent enabled"
    else act "enable mtagent" systemctl enable mtagent.service
    fi
  fi
fi

if [ "$DRY" = 1 ]; then echo "dry run: $CHANGES changes planned, $WARNINGS warnings; nothing was changed"
else echo "done: $CHANGES changes, $WARNINGS warnings"
fi
