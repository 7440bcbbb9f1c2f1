#!/bin/sh
# After removal: systemd forgets the unit. The stickylb user, its pins in
# /var/lib/stickylb and the config stay (a purge of the .deb removes the
# config, as dpkg does for every conffile).
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
exit 0
