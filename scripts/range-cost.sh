#!/usr/bin/env bash
# What a port-range listener costs, against a fixed-port one, on loopback:
#   - at idle: resident memory and open file descriptors of a stickylb
#     whose one listener takes 6005-59530 (53,526 ports; sk_lookup, so run
#     as root or with CAP_BPF and CAP_NET_ADMIN) against one with three
#     fixed ports;
#   - per new connection: `stickylb bench --mode short` through a port of
#     the range and through a fixed-port listener, alternating, the
#     balancer on CPU 0 and the load on CPU 1.
#
#   scripts/range-cost.sh [rounds]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/stickylb" ./cmd/stickylb
slb=$work/stickylb
bport=19150   # inside 6005-59530: the backends listen there

backends='[pool.p.health]
interval = "2s"
[pool.p.backend.cas1]
address = "127.0.0.11"
[pool.p.backend.cas2]
address = "127.0.0.12"
[pool.p.backend.cas3]
address = "127.0.0.13"'
cat > "$work/range.toml" <<TOML
[global]
log_level = "error"
[admin]
listen = "off"
[listener.rpc]
listen = "127.0.0.3:135,6005-59530"
pool = "p"
range_mode = "sk-lookup"
$backends
TOML
cat > "$work/fixed.toml" <<TOML
[global]
log_level = "error"
[admin]
listen = "off"
[listener.a]
listen = "127.0.0.4:$bport"
pool = "p"
[listener.b]
listen = "127.0.0.4:60001"
pool = "p"
backend_port = $bport
[listener.c]
listen = "127.0.0.4:60002"
pool = "p"
backend_port = $bport
$backends
TOML

taskset -c 1 "$slb" bench backends --hosts 127.0.0.11,127.0.0.12,127.0.0.13 --port $bport 2>/dev/null &
sleep 0.5
declare -A pid
for kind in range fixed; do
  GOMAXPROCS=1 taskset -c 0 "$slb" run -c "$work/$kind.toml" 2>"$work/$kind.log" &
  pid[$kind]=$!
done
sleep 2
for kind in range fixed; do
  p=${pid[$kind]}
  kill -0 "$p" 2>/dev/null || { cat "$work/$kind.log"; exit 1; }
  rss=$(awk '/VmRSS/ {print $2}' /proc/$p/status)
  fds=$(ls /proc/$p/fd | wc -l)
  echo "idle $kind: RSS ${rss} KiB, ${fds} file descriptors"
done
declare -A target=([range]=127.0.0.3:$bport [fixed]=127.0.0.4:$bport)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
  for kind in range fixed; do
    before=$(ticks "${pid[$kind]}")
    out=$(taskset -c 1 "$slb" bench --target "${target[$kind]}" --mode short --duration 5s --concurrency 32 --json)
    after=$(ticks "${pid[$kind]}")
    python3 -c 'import json,sys
r = json.loads(sys.argv[1]); used = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
print("round %s %s: %.0f connections/s, p50 %.3f ms, balancer CPU %.1f us per connection, %d errors" % (
    sys.argv[5], sys.argv[6], r["connections_per_second"], r["latency_ms"]["P50"], used * 1e6 / r["connections"], r["errors"]))' \
      "$out" "$before" "$after" "$hz" "$r" "$kind"
  done
done
