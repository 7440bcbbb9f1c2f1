#!/bin/sh
# Before removal (not before an upgrade): stop the service, which drains.
set -e
case "$1" in
  remove|purge|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now stickylb >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
