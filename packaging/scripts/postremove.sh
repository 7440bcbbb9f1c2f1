#!/bin/sh
# After removal: systemd forgets the unit. A removal keeps the stickylb
# user, its pins in /var/lib/stickylb and the config, for a reinstall; a
# purge of the .deb removes all the package made (Debian policy): the
# pins and journal, the admin token, the user and group, and (dpkg does
# this) the config.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = "purge" ]; then
  rm -rf /var/lib/stickylb
  # The admin token postinstall made: it is the package's, not a conffile.
  rm -f /etc/stickylb/admin.token /etc/stickylb/admin.token.new
  if getent passwd stickylb >/dev/null; then
    userdel stickylb >/dev/null 2>&1 || true
  fi
  if getent group stickylb >/dev/null; then
    groupdel stickylb >/dev/null 2>&1 || true
  fi
fi
exit 0
