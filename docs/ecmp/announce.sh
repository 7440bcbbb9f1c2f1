#!/bin/sh
# Announce the virtual address while this stickylb member should take
# clients: `stickylb ctl readyz` exits 0 while it serves, and 1 from the
# moment it drains or stops, before its first cluster sync, or with no
# CAS to give; a member that is killed answers nothing. Run it beside
# bird (a systemd service of its own, Restart=always).
#   STICKYLB_ADMIN=http://127.0.0.1:9090 BIRD_SOCKET=/run/bird/bird.ctl announce.sh
set -u
state=""
while :; do
  if stickylb ctl --admin "${STICKYLB_ADMIN:-http://127.0.0.1:9090}" readyz >/dev/null 2>&1; then
    want=enable
  else
    want=disable
  fi
  if [ "$want" != "$state" ]; then
    birdc -s "${BIRD_SOCKET:-/run/bird/bird.ctl}" "$want" vip >/dev/null && state=$want
  fi
  sleep "${INTERVAL:-0.5}"
done
