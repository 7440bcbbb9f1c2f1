#!/usr/bin/env bash
# Installs the built .deb into a fresh Debian root and checks that it
# works there: `stickylb version` prints the packaged version, `stickylb
# check` accepts the packaged lb.toml, installing made the admin token
# root:stickylb 0640 (and check does not warn of it, and a reinstall keeps
# it), the man pages and shell completion are in place, the service's user owns its state directory, lb.toml is a
# conffile, and a removal leaves no binary behind.
#
# The root is made by debootstrap (minbase, this system's release, from
# its Debian mirror) and entered with chroot in a private mount
# namespace: nothing reaches the host. Where no mirror answers, it falls
# back to an overlay of this system's own / on a tmpfs, and says so. Needs
# root (CI runs as root).
#
#   packaging/test-install.sh dist/stickylb_*_amd64.deb
#   DEBIAN_MIRROR=http://mirror.example/debian packaging/test-install.sh ...
set -euo pipefail
deb=$(realpath "$1")
[[ $(id -u) == 0 ]] || { echo "test-install.sh needs root (debootstrap, a mount namespace and chroot)" >&2; exit 1; }
want=$(dpkg-deb -f "$deb" Version)
want=${want%-*} # the binary's version, without the packaging revision
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT

# A fresh root, when this host can fetch one.
. /etc/os-release
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(\S*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
fresh=""
if command -v debootstrap >/dev/null &&
  debootstrap --variant=minbase "${VERSION_CODENAME:-bookworm}" "$top/fresh" "${mirror:-http://deb.debian.org/debian}" >"$top/debootstrap.log" 2>&1; then
  fresh=$top/fresh
  echo "fresh Debian ${VERSION_CODENAME:-bookworm} root made by debootstrap"
else
  echo "debootstrap could not make a root (no mirror?); installing into an overlay copy of this system instead:" >&2
  tail -n 3 "$top/debootstrap.log" >&2 || true
  ! command -v stickylb >/dev/null || { echo "stickylb is installed on this host; the overlay copy needs a system without it" >&2; exit 1; }
fi

unshare --mount --propagation private bash -euo pipefail -c '
top=$1 deb=$2 want=$3 fresh=$4
if [[ -n $fresh ]]; then
  root=$fresh
else
  mkdir -p "$top"/overlay
  mount -t tmpfs tmpfs "$top"/overlay
  mkdir -p "$top"/overlay/upper "$top"/overlay/work "$top"/overlay/root
  mount -t overlay overlay -o lowerdir=/,upperdir="$top"/overlay/upper,workdir="$top"/overlay/work "$top"/overlay/root
  root=$top/overlay/root
  mount -t tmpfs tmpfs "$root"/run # no systemd runs in the copy: the scripts must not need it
fi
mount -t proc proc "$root"/proc
mount --rbind /dev "$root"/dev
cp "$deb" "$root"/tmp/stickylb.deb
inroot() { chroot "$root" "$@"; }
inroot dpkg -i /tmp/stickylb.deb
got=$(inroot stickylb version)
echo "installed: $got"
[[ $got == "stickylb $want commit "* ]] || { echo "stickylb version says \"$got\", want version $want" >&2; exit 1; }
inroot stickylb check >"$top/check.out" # /etc/stickylb/lb.toml by default
grep -q "a placeholder: put this CAS.s address here" "$top/check.out" || { echo "stickylb check does not say what to edit in the template:" >&2; cat "$top/check.out" >&2; exit 1; }
[[ $(inroot stat -c "%U:%G %a" /etc/stickylb/admin.token) == "root:stickylb 640" ]] || { echo "the admin token is not root:stickylb 0640: $(inroot stat -c "%U:%G %a" /etc/stickylb/admin.token)" >&2; exit 1; }
[[ $(inroot sh -c "wc -c </etc/stickylb/admin.token") -ge 40 ]] || { echo "the admin token is short" >&2; exit 1; }
! grep -q "can be read or written by other users" "$top/check.out" || { echo "stickylb check warns about the token the package made:" >&2; cat "$top/check.out" >&2; exit 1; }
# check as the unit runs it (ExecStartPre: --as-user stickylb) passes the
# token the package made with no warning, and fails, naming the token, on
# one only root can read, which root alone would pass (issue 35, point 1).
inroot stickylb check --as-user stickylb >"$top/check-as.out" 2>&1 || { echo "stickylb check --as-user stickylb fails on the packaged files:" >&2; cat "$top/check-as.out" >&2; exit 1; }
! grep -q "other users" "$top/check-as.out" || { echo "stickylb check --as-user stickylb warns about the token the package made:" >&2; cat "$top/check-as.out" >&2; exit 1; }
inroot chown root:root /etc/stickylb/admin.token
inroot chmod 0600 /etc/stickylb/admin.token
if inroot stickylb check --as-user stickylb >"$top/check-as.out" 2>&1 || ! grep -q "admin.token_file: cannot read the token" "$top/check-as.out"; then
  echo "stickylb check --as-user stickylb passed a token only root can read:" >&2; cat "$top/check-as.out" >&2; exit 1
fi
inroot chown root:stickylb /etc/stickylb/admin.token
inroot chmod 0640 /etc/stickylb/admin.token
grep -q "^ExecStartPre=/usr/bin/stickylb check --as-user stickylb " "$root"/usr/lib/systemd/system/stickylb.service || { echo "the unit checks as root, not as its user" >&2; exit 1; }
# Every file the shipped docs link to, and every /usr/share/doc/stickylb
# path the docs, the template and the man pages name, is in the package
# (issue 35, point 6: config.md named ../lb.toml and cluster.md
# docs/ecmp/*, which were not shipped).
doc=$root/usr/share/doc/stickylb
while IFS= read -r md; do
  while IFS= read -r link; do
    [[ -e $(dirname "$md")/$link ]] || { echo "${md#"$root"} links $link, which the package lacks" >&2; exit 1; }
  done < <(grep -o "]([^)#]*" "$md" | sed "s/^](//" | grep -v "^[a-z]*:" | grep . || true)
done < <(find "$doc" -name "*.md")
named=$( (cat "$doc"/README.md "$doc"/docs/*.md "$root"/etc/stickylb/lb.toml; zcat "$root"/usr/share/man/man*/stickylb*.gz "$root"/usr/share/man/man5/lb.toml.5.gz) |
  grep -o "/usr/share/doc/stickylb/[A-Za-z0-9_./-]*" | sed "s/[.]*$//" | sort -u)
[[ -n $named ]] || { echo "no /usr/share/doc/stickylb path found in the docs: the pattern misses them" >&2; exit 1; }
for f in $named; do
  [[ -e $root$f ]] || { echo "the docs name $f, which the package lacks" >&2; exit 1; }
done
for f in lb.toml docs/config.md docs/ecmp/bird-member.conf docs/ecmp/bird-router.conf docs/ecmp/announce.sh; do
  [[ -s $doc/$f ]] || { echo "the package lacks /usr/share/doc/stickylb/$f" >&2; exit 1; }
done
inroot grep -q "^socket = \"/run/stickylb/admin.sock\"" /etc/stickylb/lb.toml || { echo "the packaged lb.toml has no admin socket" >&2; exit 1; }
token=$(inroot cat /etc/stickylb/admin.token)
# Without systemd (this root has none), a service run with the unit
# --pidfile makes /run/stickylb, which nothing made, and an upgrade hands
# it over by that file to the new binary (issue 35, point 4).
port=$((20000 + RANDOM % 10000))
printf "[admin]\nlisten = \"off\"\n[listener.rpc]\nlisten = \"127.0.0.1:%d\"\npool = \"cas\"\n[pool.cas.backend.cas1]\naddress = \"127.0.0.2\"\n" "$port" >"$root"/tmp/handover.toml
[[ ! -e $root/run/stickylb ]] || { echo "/run/stickylb is there before stickylb ran: this test needs it missing" >&2; exit 1; }
chroot "$root" setsid stickylb run -c /tmp/handover.toml --pidfile /run/stickylb/stickylb.pid </dev/null >"$top/run.log" 2>&1 &
trap "kill \$(cat \"$root\"/run/stickylb/stickylb.pid 2>/dev/null) 2>/dev/null || true" EXIT
for _ in $(seq 50); do [[ -s $root/run/stickylb/stickylb.pid ]] && break; sleep 0.2; done
old=$(cat "$root"/run/stickylb/stickylb.pid 2>/dev/null) || { echo "run --pidfile /run/stickylb/stickylb.pid wrote no pid file:" >&2; cat "$top/run.log" >&2; exit 1; }
inroot dpkg -i /tmp/stickylb.deb >"$top/reinstall.out" 2>&1 # a reinstall keeps the token, and hands the service over
grep -q "stickylb: the running service (pid $old) handed over to the new binary" "$top/reinstall.out" || { echo "dpkg -i did not hand the service over by its pid file:" >&2; cat "$top/reinstall.out" "$top/run.log" >&2; exit 1; }
new=$(cat "$root"/run/stickylb/stickylb.pid)
[[ $new != "$old" ]] && kill -0 "$new" || { echo "no new process serves after the hand-over (pid file: $new)" >&2; exit 1; }
kill -TERM "$new"
for _ in $(seq 100); do kill -0 "$new" 2>/dev/null || break; sleep 0.2; done
! kill -0 "$new" 2>/dev/null || { echo "the new process did not stop on SIGTERM" >&2; exit 1; }
[[ $(inroot cat /etc/stickylb/admin.token) == "$token" ]] || { echo "a reinstall replaced the admin token" >&2; exit 1; }
for f in /usr/share/man/man8/stickylb.8.gz /usr/share/man/man8/stickylb-ctl-drain.8.gz /usr/share/bash-completion/completions/stickylb \
  /usr/share/zsh/vendor-completions/_stickylb /usr/share/fish/vendor_completions.d/stickylb.fish; do
  [[ -s $root$f ]] || { echo "the package lacks $f" >&2; exit 1; }
done
zcat "$root"/usr/share/man/man8/stickylb-run.8.gz | grep "config file" >/dev/null || { echo "stickylb-run(8) does not document -c" >&2; exit 1; }
zcat "$root"/usr/share/man/man8/stickylb.8.gz | grep "^.SH EXIT STATUS" >/dev/null || { echo "stickylb(8) has no EXIT STATUS" >&2; exit 1; }
zcat "$root"/usr/share/man/man5/lb.toml.5.gz | grep "snapshot_file" >/dev/null || { echo "lb.toml(5) is missing or does not document the keys" >&2; exit 1; }
[[ ! -e $root/usr/share/man/man8/stickylb-completion-powershell.8.gz ]] || { echo "a PowerShell completion page on Linux" >&2; exit 1; }
inroot id stickylb
[[ $(inroot stat -c %U /var/lib/stickylb) == stickylb ]] || { echo "/var/lib/stickylb is not owned by stickylb" >&2; exit 1; }
inroot grep -q "^snapshot_file = \"/var/lib/stickylb/pins.json\"" /etc/stickylb/lb.toml || { echo "the packaged lb.toml does not keep pins in /var/lib/stickylb" >&2; exit 1; }
inroot dpkg-query -W -f="\${Conffiles}\n" stickylb | grep /etc/stickylb/lb.toml >/dev/null || { echo "lb.toml is not a conffile" >&2; exit 1; }
if inroot sh -c "command -v systemd-analyze" >/dev/null; then
  inroot systemd-analyze verify /usr/lib/systemd/system/stickylb.service
fi
inroot dpkg -r stickylb
! inroot sh -c "command -v stickylb" >/dev/null || { echo "stickylb still installed after dpkg -r" >&2; exit 1; }
[[ -d $root/var/lib/stickylb ]] && inroot id stickylb >/dev/null || { echo "a removal (not a purge) dropped the pins or the user" >&2; exit 1; }
# The .rpm has no purge: an erase (its postremove with 0; the same script)
# removes the admin token and keeps the user (issue 35, point 7).
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postrm >"$root"/tmp/postrm
inroot sh /tmp/postrm 0
[[ ! -e $root/etc/stickylb/admin.token ]] && inroot id stickylb >/dev/null || { echo "an .rpm erase left the admin token or dropped the user" >&2; exit 1; }
inroot dpkg -i /tmp/stickylb.deb
inroot dpkg -r stickylb
# A purge gives what the operator left in /etc/stickylb (the cluster key)
# to root, keeping its mode, before the user is deleted (issue 35, point 7).
(umask 077 && head -c 32 /dev/urandom | base64 >"$root"/etc/stickylb/cluster.key)
inroot chown stickylb:stickylb /etc/stickylb/cluster.key
inroot dpkg --purge stickylb
[[ $(inroot stat -c "%U:%G %a" /etc/stickylb/cluster.key) == "root:root 600" ]] || { echo "a purge left the cluster key $(inroot stat -c "%U:%G %a" /etc/stickylb/cluster.key)" >&2; exit 1; }
rm -f "$root"/etc/stickylb/cluster.key
[[ ! -e $root/var/lib/stickylb && ! -e $root/etc/stickylb/lb.toml && ! -e $root/etc/stickylb/admin.token ]] || { echo "a purge left /var/lib/stickylb, the config or the admin token" >&2; exit 1; }
! inroot id stickylb >/dev/null 2>&1 || { echo "a purge left the stickylb user" >&2; exit 1; }
echo "package ok: installs, runs version and check, removes, purges"
' _ "$top" "$deb" "$want" "$fresh"
