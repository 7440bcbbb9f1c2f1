#!/bin/sh
# After install or upgrade: the service's own user owns its state and may
# read its config; systemd learns the unit. The service is not enabled or
# started: edit /etc/stickylb/lb.toml for your CAS array first, check it
# with `stickylb check`, then `systemctl enable --now stickylb`. An
# upgrade hands a running service over to the new binary (SIGUSR2 to the
# main process: it takes the listening sockets, pins and operator
# decisions, the admin port and socket, the port ranges' sk_lookup
# steering and the open connections), so no connection is cut and no
# client moves. A hand-over that fails leaves the old process serving,
# and a message says so; nothing restarts, as a restart would cut every
# session. Without systemd the process its pid file names is handed over
# alike, or a message says what still runs.
set -e
if ! getent passwd stickylb >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /var/lib/stickylb \
    --shell /usr/sbin/nologin --comment "stickylb load balancer" stickylb
fi
# The state directory is made here, not shipped: a removal then keeps the
# pins (dpkg deletes the empty directories it owns) and only a purge
# removes them.
install -d -m 0750 -o stickylb -g stickylb /var/lib/stickylb
chown root:stickylb /etc/stickylb/lb.toml
# The admin token the packaged lb.toml names (admin.token_file), made once:
# root writes it, the service reads it through its group, no one else can
# (check takes root:stickylb 0640 as the package's own). A purge removes it.
if [ ! -e /etc/stickylb/admin.token ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 >/etc/stickylb/admin.token.new)
  chown root:stickylb /etc/stickylb/admin.token.new
  chmod 0640 /etc/stickylb/admin.token.new
  mv /etc/stickylb/admin.token.new /etc/stickylb/admin.token
fi
# handover PID: SIGUSR2 to PID, then wait up to 20 s for the pid file to
# name the process that took over.
handover() {
  kill -USR2 "$1" 2>/dev/null || return 1
  i=0
  while [ "$i" -lt 20 ]; do
    sleep 1
    now=$(cat /run/stickylb/stickylb.pid 2>/dev/null || true)
    [ -n "$now" ] && [ "$now" != "$1" ] && return 0
    i=$((i + 1))
  done
  return 1
}
if [ ! -d /run/systemd/system ]; then
  # Without systemd (a container, another init) the service is found by
  # the pid file `stickylb run --pidfile /run/stickylb/stickylb.pid`
  # writes, and handed over the same way; a stickylb without that file
  # is left running the old binary, and this says so.
  pid=$(cat /run/stickylb/stickylb.pid 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = stickylb ]; then
    if handover "$pid"; then
      echo "stickylb: the running service (pid $pid) handed over to the new binary (pid $(cat /run/stickylb/stickylb.pid))"
    else
      echo "stickylb: the running service (pid $pid) did not hand over to the new binary within 20 s and still runs the old one: restart it" >&2
    fi
  elif grep -qx stickylb /proc/[0-9]*/comm 2>/dev/null; then
    echo "stickylb: a stickylb runs without systemd and without /run/stickylb/stickylb.pid: it still runs the old binary; send it SIGUSR2 (kill -USR2 PID) to hand over, or restart it" >&2
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  if systemctl is-active --quiet stickylb; then
    # The new process says MAINPID= once it serves; if that does not
    # happen within 20 s the old one still serves: say so, do not restart.
    pid=$(systemctl show -p MainPID --value stickylb)
    kill -USR2 "$pid" 2>/dev/null || true
    i=0
    while [ "$i" -lt 20 ] && [ "$(systemctl show -p MainPID --value stickylb)" = "$pid" ]; do
      sleep 1
      i=$((i + 1))
    done
    if [ "$(systemctl show -p MainPID --value stickylb)" = "$pid" ]; then
      echo "stickylb: the running service (pid $pid) did not hand over to the new binary within 20 s and still serves on the old one; see journalctl -u stickylb for why, then send it SIGUSR2 again (systemctl kill -s USR2 --kill-whom=main stickylb) or restart it when a restart's cut is acceptable" >&2
    fi
  fi
fi
exit 0
