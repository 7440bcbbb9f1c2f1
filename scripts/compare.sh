#!/usr/bin/env bash
# Side-by-side: the same `stickylb bench` loads against the backends
# directly, HAProxy, nginx and stickylb, with equivalent sticky
# configurations, on loopback. Installs nothing: it uses haproxy and nginx
# (with the stream module) where they are installed and skips them where
# not. The balancer under test is pinned to CPU 0 and the load to CPU 1.
#
#   scripts/compare.sh [rounds]        (default 3 rounds, alternating order,
#                                       then syscalls and hops once each)
#   MODES="short lat" scripts/compare.sh 1   (only some of bulk, short, lat,
#                                             syscalls, hops)
#   MODES=syscalls scripts/compare.sh 1      (system calls per connection of
#                                             each balancer, one client at a
#                                             time: bpftrace, else strace)
#   MODES=hops scripts/compare.sh 1          (where latency goes: each
#                                             balancer's own delay per step of
#                                             a connection, from a tcpdump)
#   MODES=rpc scripts/compare.sh 3           (what reading DCE/RPC costs:
#                                             bench --mode rpc direct, through
#                                             HAProxy and through stickylb
#                                             pools of dcerpc off, binds and
#                                             calls; not in the default set)
#   STICKYLB=/path/to/stickylb scripts/compare.sh   (measure that binary,
#                                             e.g. an older commit's build)
#   LB_ENV="GODEBUG=..." scripts/compare.sh  (environment for the stickylb
#                                             under test only)
#   REPORT=docs/compare.md scripts/compare.sh 3   (also write the table and
#                                             ratios, with the machine, date
#                                             and command, as Markdown: the
#                                             file docs/benchmarks.md quotes)
#
# Prints one line per measurement and a table of medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
modes=" ${MODES:-bulk short lat syscalls hops} "
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

go build -o "$work/stickylb" ./cmd/stickylb
slb="$work/stickylb"     # the load generator and backends
lb=${STICKYLB:-$slb}     # the stickylb under test
bport=19100
rport=19101 # the backends' DCE/RPC port, for MODES=rpc
hosts=127.0.0.11,127.0.0.12,127.0.0.13
rpc=false
[[ $modes == *" rpc "* ]] && rpc=true
backend_args=()
$rpc && backend_args=(--rpc-port $rport)

taskset -c 1 "$slb" bench backends --hosts "$hosts" --port $bport "${backend_args[@]}" 2>/dev/null &
sleep 0.5

declare -A target pid
target[direct]=127.0.0.11:$bport

# stickylb: source-IP affinity, rendezvous hashing.
cat > "$work/lb.toml" <<TOML
[global]
log_level = "error"
[admin]
listen = "off"
[listener.bench]
listen = "127.0.0.1:19201"
pool = "p"
backend_port = $bport
[pool.p.health]
interval = "2s"
[pool.p.backend.cas1]
address = "127.0.0.11"
[pool.p.backend.cas2]
address = "127.0.0.12"
[pool.p.backend.cas3]
address = "127.0.0.13"
TOML
# For MODES=rpc: the same pool three times on the backends' DCE/RPC port,
# reading it each of the three ways.
if $rpc; then
  i=1
  for depth in off binds calls; do
    cat >> "$work/lb.toml" <<TOML
[listener.rpc$depth]
listen = "127.0.0.1:1921$i"
pool = "rpc$depth"
backend_port = $rport
[pool.rpc$depth]
dcerpc = "$depth"
[pool.rpc$depth.health]
interval = "2s"
[pool.rpc$depth.backend.cas1]
address = "127.0.0.11"
[pool.rpc$depth.backend.cas2]
address = "127.0.0.12"
[pool.rpc$depth.backend.cas3]
address = "127.0.0.13"
TOML
    target[rpc/stickylb-$depth]=127.0.0.1:1921$i
    i=$((i + 1))
  done
fi
env ${LB_ENV:-} GOMAXPROCS=1 taskset -c 0 "$lb" run -c "$work/lb.toml" 2>"$work/stickylb.log" &
pid[stickylb]=$!
target[stickylb]=127.0.0.1:19201
target[rpc/direct]=127.0.0.11:$rport
for depth in off binds calls; do [[ -n ${target[rpc/stickylb-$depth]:-} ]] && pid[rpc/stickylb-$depth]=${pid[stickylb]}; done

if command -v haproxy >/dev/null; then
  cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 6000
defaults
  mode tcp
  timeout connect 5s
  timeout client 3h
  timeout server 3h
  option splice-auto
  # stickylb keeps TCP keepalive on both legs (60s idle and interval, 3
  # probes): the same here, so each sets the same socket options.
  option clitcpka
  option srvtcpka
  clitcpka-idle 60s
  clitcpka-intvl 60s
  clitcpka-cnt 3
  srvtcpka-idle 60s
  srvtcpka-intvl 60s
  srvtcpka-cnt 3
frontend bench
  bind 127.0.0.1:19202
  default_backend cas
backend cas
  balance source
  hash-type consistent
  server cas1 127.0.0.11:$bport check
  server cas2 127.0.0.12:$bport check
  server cas3 127.0.0.13:$bport check
CFG
  if $rpc; then
    cat >> "$work/haproxy.cfg" <<CFG
frontend rpc
  bind 127.0.0.1:19204
  default_backend rpccas
backend rpccas
  balance source
  hash-type consistent
  server cas1 127.0.0.11:$rport check
  server cas2 127.0.0.12:$rport check
  server cas3 127.0.0.13:$rport check
CFG
  fi
  taskset -c 0 haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
  pid[haproxy]=$!
  target[haproxy]=127.0.0.1:19202
  if $rpc; then pid[rpc/haproxy]=${pid[haproxy]}; target[rpc/haproxy]=127.0.0.1:19204; fi
fi

stream_mod=$(ls /usr/lib/nginx/modules/ngx_stream_module.so 2>/dev/null || true)
if command -v nginx >/dev/null && [[ -n $stream_mod ]]; then
  mkdir -p "$work/nginx"
  cat > "$work/nginx.conf" <<CFG
load_module $stream_mod;
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 8000; }
stream {
  upstream cas {
    hash \$remote_addr consistent;
    server 127.0.0.11:$bport;
    server 127.0.0.12:$bport;
    server 127.0.0.13:$bport;
  }
  server {
    listen 127.0.0.1:19203 so_keepalive=60s:60s:3;
    proxy_pass cas;
    proxy_socket_keepalive on;
    proxy_half_close on;
  }
}
CFG
  taskset -c 0 nginx -c "$work/nginx.conf" -p "$work/nginx" 2>"$work/nginx.log" &
  pid[nginx]=$!
  target[nginx]=127.0.0.1:19203
fi
sleep 1

# cpu_ticks PID: "user system" clock ticks of a process and its threads.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
# For nginx the work is done by its worker, a child of the master.
worker_of() { local c; c=$(pgrep -P "$1" | head -1); echo "${c:-$1}"; }

names=(direct)
for n in haproxy nginx stickylb; do [[ -n ${target[$n]:-} ]] && names+=("$n"); done
echo "targets: ${names[*]}"
rpc_names=()
if $rpc; then
  for n in direct haproxy stickylb-off stickylb-binds stickylb-calls; do [[ -n ${target[rpc/$n]:-} ]] && rpc_names+=("rpc/$n"); done
  echo "rpc targets: ${rpc_names[*]}"
fi

results="$work/results.txt"
: > "$results"
# ctx_switches PID: context switches of all of a process's threads.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
measure() { # name mode args...
  local name=$1 mode=$2; shift 2
  local p="" u0=0 s0=0 u1=0 s1=0 c0=0 c1=0
  if [[ -n ${pid[$name]:-} ]]; then p=$(worker_of "${pid[$name]}"); read -r u0 s0 < <(cpu_ticks "$p"); c0=$(ctx_switches "$p"); fi
  taskset -c 1 "$slb" bench --target "${target[$name]}" --json "$@" > "$work/run.json"
  if [[ -n $p ]]; then read -r u1 s1 < <(cpu_ticks "$p"); c1=$(ctx_switches "$p"); fi
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$name" "$mode" "$((u1 - u0))" "$((s1 - s0))" "$hz" "$work/run.json" "$((c1 - c0))" >> "$results" <<'PY'
import json, sys
name, mode, user, system, hz, path, switches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
r = json.load(open(path))
n = max(r["connections"], 1)
us = lambda ticks: 1e6 * ticks / hz / n
print(name, mode, r["connections_per_second"], r["throughput_mb_per_second"], r["latency_ms"]["P50"], us(user + system), r["affinity_violations"], r["errors"], switches / n, us(user), us(system))
PY
  tail -1 "$results"
}

# syscalls NAME: system calls per connection of a balancer, one client at
# a time for 3 s, counted on the kernel's syscall tracepoints with
# bpftrace (every thread of the process, nothing slowed), or by strace -c
# where bpftrace is not installed (which slows the balancer; no timing is
# taken here either way). A call is counted as it enters the kernel, so
# one that fails with EAGAIN counts too.
syscalls() {
  local name=$1 p out="$work/syscalls.$1" tool st
  p=$(worker_of "${pid[$name]}")
  if command -v bpftrace >/dev/null; then
    tool=bpftrace
    mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    bpftrace -e "tracepoint:syscalls:sys_enter_* /pid == $p/ { @[probe] = count(); }" > "$out" 2>/dev/null &
    st=$!
    sleep 3 # attaching to every syscall tracepoint takes a moment
  else
    tool=strace
    strace -c -f -p "$p" -o "$out" 2>/dev/null &
    st=$!
    sleep 0.5
  fi
  taskset -c 1 "$slb" bench --target "${target[$name]}" --json --mode short --clients 50 --concurrency 1 --duration 3s > "$work/run.json"
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  python3 - "$name" "$out" "$work/run.json" "$tool" <<'PY' | tee -a "$work/syscalls.txt"
import json, re, sys
name, out, path, tool = sys.argv[1:5]
n = max(json.load(open(path))["connections"], 1)
calls = {}
for line in open(out):
    m = re.match(r"@\[tracepoint:syscalls:sys_enter_(\w+)\]: (\d+)", line)
    if m:
        calls[m.group(1)] = int(m.group(2))
        continue
    f = line.split()
    if tool == "strace" and len(f) >= 5 and f[3].isdigit() and f[-1] not in ("total", "syscall"):
        calls[f[-1]] = int(f[3])
# The Go runtime's monitor thread sleeps and wakes on its own clock, not
# per connection; shown apart.
idle = {k: calls.pop(k) for k in ("nanosleep", "clock_nanosleep") if k in calls}
total = sum(calls.values())
rest = ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / n >= 0.05)
print(f"{name:10} {total / n:5.1f} system calls per connection ({tool}, {n} connections one at a time): {rest}" +
      (f"; apart: " + ", ".join(f"{k} {v / n:.2f}" for k, v in idle.items()) if idle else ""))
PY
}
# hops NAME: each step's delay inside a balancer at concurrency 1, from
# a loopback capture of both its legs (`stickylb analyze --steps`, which
# says what each step is). Timestamps are the kernel's, taken as each
# packet crosses loopback, so the load generator's own delays are not in
# them.
hops() {
  local name=$1 port=${target[$1]##*:} cap="$work/hops.$1.pcap" tp
  tcpdump -i lo -w "$cap" -s 96 -B 32768 "tcp port $port or tcp port $bport" 2>/dev/null &
  tp=$!
  sleep 1
  taskset -c 1 "$slb" bench --target "${target[$name]}" --json --mode short --clients 50 --concurrency 1 --duration 3s > "$work/run.json"
  sleep 0.5
  kill -INT "$tp"; wait "$tp" 2>/dev/null || true
  { echo "$name"; "$slb" analyze --steps "$port,$bport" "$cap" | sed 's/^/  /'; } | tee -a "$work/hops.txt"
}
: > "$work/syscalls.txt"
: > "$work/hops.txt"
if [[ $modes == *" syscalls "* ]]; then
  if command -v bpftrace >/dev/null || command -v strace >/dev/null; then
    for n in "${names[@]}"; do [[ $n != direct ]] && syscalls "$n"; done
  else
    echo "system calls not counted: neither bpftrace nor strace is installed (apt install bpftrace)" | tee "$work/syscalls.txt"
  fi
fi
if [[ $modes == *" hops "* ]]; then
  if command -v tcpdump >/dev/null; then
    for n in "${names[@]}"; do [[ $n != direct ]] && hops "$n"; done
  else
    echo "steps not timed: tcpdump is not installed (apt install tcpdump)" | tee "$work/hops.txt"
  fi
fi

for round in $(seq "$rounds"); do
  # Alternate the order so no target always runs on a warm or cold machine.
  order=("${names[@]}")
  if (( round % 2 == 0 )); then order=($(printf '%s\n' "${names[@]}" | tac)); fi
  for n in "${order[@]}"; do
    [[ $modes == *" bulk "* ]] && measure "$n" bulk --mode bulk --clients 4 --concurrency 4 --size $((64 << 20)) --duration 5s
    [[ $modes == *" short "* ]] && measure "$n" short --mode short --clients 200 --concurrency 32 --duration 5s
    [[ $modes == *" lat "* ]] && measure "$n" lat --mode short --clients 50 --concurrency 1 --duration 3s
  done
  # DCE/RPC: a connection (connect, bind, one call, close), then 100
  # calls on each connection (a round trip's cost is the connection's
  # over 101 exchanges: the bind and the calls), then latency at c=1.
  order=("${rpc_names[@]}")
  if (( round % 2 == 0 )); then order=($(printf '%s\n' "${rpc_names[@]}" | tac)); fi
  for n in "${order[@]}"; do
    results="$work/rpc.txt" measure "$n" conn --mode rpc --calls 1 --clients 200 --concurrency 32 --duration 5s
    results="$work/rpc.txt" measure "$n" calls --mode rpc --calls 100 --clients 32 --concurrency 32 --duration 5s
    results="$work/rpc.txt" measure "$n" lat --mode rpc --calls 1 --clients 50 --concurrency 1 --duration 3s
  done
done

python3 - "$results" > "$work/table.txt" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
if not rows:
    sys.exit(0)  # only syscalls or hops were asked for
m = {}
for name, mode, cps, mbps, p50, cpu, viol, errs, cs, user, system in rows:
    m.setdefault((name, mode), []).append((float(cps), float(mbps), float(p50), float(cpu), int(viol), int(errs), float(cs), float(user), float(system)))
med = lambda k, i: st.median(v[i] for v in m[k]) if k in m else float("nan")
names = sorted({k[0] for k in m}, key=lambda n: ["direct", "haproxy", "nginx", "stickylb"].index(n))
print()
print(f"{'target':10} {'bulk MB/s':>10} {'short conn/s':>13} {'CPU us/conn':>12} {'(user+sys)':>12} {'p50 ms (c=1)':>13} {'switches/conn (c=1)':>20} {'violations':>10} {'errors':>7}")
for n in names:
    viol = sum(v[4] for k in m if k[0] == n for v in m[k])
    errs = sum(v[5] for k in m if k[0] == n for v in m[k])
    split = f"{med((n,'short'),7):.0f}+{med((n,'short'),8):.0f}"
    print(f"{n:10} {med((n,'bulk'),1):10.0f} {med((n,'short'),0):13.0f} {med((n,'short'),3):12.1f} {split:>12} {med((n,'lat'),2):13.3f} {med((n,'lat'),6):20.1f} {viol:10d} {errs:7d}")
def ratio(a, b, i, mode):
    try: return med((a, mode), i) / med((b, mode), i)
    except (ZeroDivisionError, KeyError): return float("nan")
print()
if ("stickylb", "bulk") in m:
    print(f"stickylb / direct   bulk throughput  {ratio('stickylb','direct',1,'bulk'):.2f}x   (target >= 0.80)")
    for other in ("haproxy", "nginx"):
        if (other, "bulk") in m:
            print(f"stickylb / {other:8} bulk throughput  {ratio('stickylb',other,1,'bulk'):.2f}x")
            print(f"stickylb / {other:8} CPU per short conn {ratio('stickylb',other,3,'short'):.2f}x")
            print(f"stickylb - {other:8} added p50 latency {(med(('stickylb','lat'),2)-med((other,'lat'),2))*1000:+.0f} us")
PY
cat "$work/table.txt"

touch "$work/rpc.txt"
python3 - "$work/rpc.txt" > "$work/rpctable.txt" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
if not rows:
    sys.exit(0)  # rpc was not asked for
m = {}
for name, mode, cps, mbps, p50, cpu, viol, errs, *_ in rows:
    m.setdefault((name.removeprefix("rpc/"), mode), []).append((float(cps), float(p50), float(cpu), int(viol), int(errs)))
med = lambda n, mode, i: st.median(v[i] for v in m[(n, mode)]) if (n, mode) in m else float("nan")
order = ["direct", "haproxy", "stickylb-off", "stickylb-binds", "stickylb-calls"]
names = sorted({k[0] for k in m}, key=order.index)
# A round trip: the calls-100 connection's CPU over its 101 exchanges.
rt = lambda n: med(n, "calls", 2) / 101
print()
print("DCE/RPC (bench --mode rpc): CPU of the balancer, us")
print(f"{'target':15} {'conn/s':>8} {'CPU us/conn':>12} {'CPU us/round trip':>18} {'p50 ms (c=1)':>13} {'errors':>7} {'violations':>10}")
for n in names:
    viol = sum(v[3] for k in m if k[0] == n for v in m[k])
    errs = sum(v[4] for k in m if k[0] == n for v in m[k])
    print(f"{n:15} {med(n,'conn',0):8.0f} {med(n,'conn',2):12.1f} {rt(n):18.2f} {med(n,'lat',1):13.3f} {errs:7d} {viol:10d}")
print()
for n in names:
    if n.startswith("stickylb") and "haproxy" in names:
        print(f"rpc: {n:14} / haproxy  CPU per conn {med(n,'conn',2)/med('haproxy','conn',2):.2f}x, per round trip {rt(n)/rt('haproxy'):.2f}x, "
              f"added p50 {(med(n,'lat',1)-med('haproxy','lat',1))*1000:+.0f} us")
for n in ("stickylb-binds", "stickylb-calls"):
    if n in names and "stickylb-off" in names:
        print(f"rpc: {n:14} - off      CPU per conn {med(n,'conn',2)-med('stickylb-off','conn',2):+.1f} us, per round trip {rt(n)-rt('stickylb-off'):+.2f} us")
PY
cat "$work/rpctable.txt"

if [[ -n ${REPORT:-} ]]; then
  {
    echo "# Side by side: the latest run of scripts/compare.sh"
    echo
    echo "Written by \`REPORT=$REPORT scripts/compare.sh $rounds\` (MODES=\"$(xargs <<<"$modes")\"), $(date -u +%Y-%m-%d), on this machine:"
    echo
    echo "- CPU: $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "- Linux $(uname -r), $(go version | cut -d' ' -f3-)"
    echo "- stickylb: ${STICKYLB:-commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo ' with uncommitted changes')}"
    command -v haproxy >/dev/null && echo "- $(haproxy -v | head -1 | cut -d' ' -f1-3)"
    command -v nginx >/dev/null && echo "- $(nginx -v 2>&1 | cut -d' ' -f3-)"
    echo
    echo "Medians of $rounds rounds in alternating order, the balancer on CPU 0 and the load on CPU 1."
    echo "CPU is the balancer's user+system time per connection; switches are its context switches per connection at concurrency 1."
    echo "Absolute figures are this machine's; the ratios are what carries to another."
    echo
    if [[ -s $work/table.txt ]]; then
      echo '```'
      sed '/^$/d' "$work/table.txt"
      echo '```'
    fi
    if [[ -s $work/rpctable.txt ]]; then
      echo
      echo "DCE/RPC: \`bench --mode rpc\` direct, through HAProxy and through stickylb pools of \`dcerpc\` off, binds and calls; CPU per round trip is that of a connection of 100 calls over its 101 exchanges:"
      echo
      echo '```'
      sed '/^$/d' "$work/rpctable.txt"
      echo '```'
    fi
    if [[ -s $work/syscalls.txt ]]; then
      echo
      echo "System calls per proxied connection, one client at a time for 3 s, every thread of the balancer, counted as each call enters the kernel (EAGAIN included):"
      echo
      echo '```'
      cat "$work/syscalls.txt"
      echo '```'
    fi
    if [[ -s $work/hops.txt ]]; then
      echo
      echo "Each step's delay inside the balancer at concurrency 1, from a loopback capture of both legs (\`stickylb analyze --steps\`):"
      echo
      echo '```'
      cat "$work/hops.txt"
      echo '```'
    fi
  } > "$REPORT"
  echo "wrote $REPORT"
fi
