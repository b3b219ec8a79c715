#!/usr/bin/env bash
# Installs a release on / for real, inside the private mount namespace this
# runs in (unshare -m), with overlays over the folders install.sh writes, so
# the host is untouched; then runs the unit's ExecStart as its User= and
# talks to it as an operator and a process server would.
#
#   unshare -m --propagation private bash real-install.sh WORKDIR TARBALL PORT
#
# Prints what the test checks as "key: value" lines; exits non-zero on the
# first failure.
set -euo pipefail
work="$1"; tarball="$2"; port="$3"

for d in etc opt var mnt usr/local; do
  mkdir -p "$work/overlay/$d/upper" "$work/overlay/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$work/overlay/$d/upper,workdir=$work/overlay/$d/work" "/$d"
done
# A machine that had mtagent installed already would not test a first install.
! id mtagent >/dev/null 2>&1 || { echo "a user mtagent exists on this machine already" >&2; exit 1; }

mkdir -p "$work/release"
tar -xzf "$tarball" -C "$work/release"
tree="$(echo "$work"/release/mtagent-*)"
# systemctl is asked only where systemd does not run: there, the installer must say it did not enable the unit.
if [ -d /run/systemd/system ]; then flags=(--no-systemctl); else flags=(); fi
echo "== install"
bash "$tree/scripts/install.sh" "${flags[@]}" 2>&1 | tee "$work/install-1.log"
echo "== install again"
bash "$tree/scripts/install.sh" "${flags[@]}" 2>&1 | tee "$work/install-2.log"

config=/etc/mtagent/agent.yaml
# The operator adds a pair and a port of the test's; writing over the file keeps its owner and mode.
edited="$(sed -e "s/port: 9443/port: $port/" -e 's/^metrics: .*/metrics: null/' -e 's#^pairs: \[\]#pairs:\n  - { id: real1, target: /var/lib/mtagent/datastore/real1.img, sizeBytes: 4194304 }#' "$config")"
printf '%s\n' "$edited" > "$config"

exec_start="$(sed -n 's/^ExecStart=//p' /etc/systemd/system/mtagent.service)"
user="$(sed -n 's/^User=//p' /etc/systemd/system/mtagent.service)"
umask_="$(sed -n 's/^UMask=//p' /etc/systemd/system/mtagent.service)"
echo "unit-user: $user"
echo "== run the unit's ExecStart as $user"
( umask "$umask_"; cd /; exec setpriv --reuid="$user" --regid="$user" --init-groups -- $exec_start ) > "$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 200); do
  grep -q '"mtagent running"' "$work/daemon.log" && break
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '"mtagent running"' "$work/daemon.log"; then
  echo "daemon-started: no"; cat "$work/daemon.log"; exit 1
fi
echo "daemon-started: yes"
echo "daemon-user: $(ps -o user= -p "$daemon")"

mtagent status --config "$config" --json > "$work/status-before.json"
echo "== stream"
mtagent simulate --config "$config" --workload random --duration 3 --verify 1 2>&1 | tail -5
setpriv --reuid="$user" --regid="$user" --init-groups -- /usr/local/bin/mtagent status --config "$config" --json > "$work/status-after.json"
echo "== files"
for f in /etc/mtagent /etc/mtagent/agent.yaml /etc/mtagent/passphrase /etc/mtagent/tls /etc/mtagent/tls/agent.key /var/lib/mtagent /var/lib/mtagent/catalog.db /var/lib/mtagent/control.sock /mnt/retention; do
  echo "file: $(stat -c '%U:%G %a' "$f") $f"
done
kill -TERM "$daemon"
wait "$daemon" && code=0 || code=$?
echo "daemon-exit: $code"
