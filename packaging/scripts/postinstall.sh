#!/bin/sh
# After install or upgrade: the service's own user owns its state and may
# read its config; systemd learns the unit. The service is not enabled or
# started: edit /etc/stickylb/lb.toml for your CAS array first, check it
# with `stickylb check`, then `systemctl enable --now stickylb`. An
# upgrade restarts a running service (a drain, then the new binary takes
# the pins from its snapshot or its cluster peers).
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
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
  if systemctl is-active --quiet stickylb; then
    systemctl restart stickylb || true
  fi
fi
exit 0
