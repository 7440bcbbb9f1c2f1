#!/bin/sh
# After removal: systemd forgets the unit. A removal keeps the stickylb
# user, its pins in /var/lib/stickylb and the config, for a reinstall; a
# purge of the .deb removes all the package made (Debian policy): the
# pins and journal, the admin token, the user and group, and (dpkg does
# this) the config. What the operator put in /etc/stickylb (the cluster
# key, a TLS key) stays, given to root first, so that no system user
# given the deleted user's id later owns it.
#
# The RPM package has no purge: an erase ($1 = 0) removes the admin
# token, which only this package made and nothing else reads, and keeps
# the user (RPM distributions never delete system users), so the pins and
# a cluster key keep a live owner; an edited lb.toml is kept as
# lb.toml.rpmsave.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
case "$1" in
  purge)
    rm -rf /var/lib/stickylb
    # The admin token postinstall made: it is the package's, not a conffile.
    rm -f /etc/stickylb/admin.token /etc/stickylb/admin.token.new
    for f in /etc/stickylb/*; do
      [ -f "$f" ] && [ ! -L "$f" ] || continue
      case "$(stat -c %U:%G "$f")" in
        stickylb:* | *:stickylb) chown root:root "$f" ;;
      esac
    done
    if getent passwd stickylb >/dev/null; then
      userdel stickylb >/dev/null 2>&1 || true
    fi
    if getent group stickylb >/dev/null; then
      groupdel stickylb >/dev/null 2>&1 || true
    fi
    ;;
  0)
    rm -f /etc/stickylb/admin.token /etc/stickylb/admin.token.new
    ;;
esac
exit 0
