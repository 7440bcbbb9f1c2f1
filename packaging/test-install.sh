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
inroot grep -q "^socket = \"/run/stickylb/admin.sock\"" /etc/stickylb/lb.toml || { echo "the packaged lb.toml has no admin socket" >&2; exit 1; }
token=$(inroot cat /etc/stickylb/admin.token)
inroot dpkg -i /tmp/stickylb.deb # a reinstall keeps the token
[[ $(inroot cat /etc/stickylb/admin.token) == "$token" ]] || { echo "a reinstall replaced the admin token" >&2; exit 1; }
for f in /usr/share/man/man8/stickylb.8.gz /usr/share/man/man8/stickylb-ctl-drain.8.gz /usr/share/bash-completion/completions/stickylb \
  /usr/share/zsh/vendor-completions/_stickylb /usr/share/fish/vendor_completions.d/stickylb.fish; do
  [[ -s $root$f ]] || { echo "the package lacks $f" >&2; exit 1; }
done
zcat "$root"/usr/share/man/man8/stickylb-run.8.gz | grep -q "config file" || { echo "stickylb-run(8) does not document -c" >&2; exit 1; }
zcat "$root"/usr/share/man/man8/stickylb.8.gz | grep -q "^.SH EXIT STATUS" || { echo "stickylb(8) has no EXIT STATUS" >&2; exit 1; }
zcat "$root"/usr/share/man/man5/lb.toml.5.gz | grep -q "snapshot_file" || { echo "lb.toml(5) is missing or does not document the keys" >&2; exit 1; }
[[ ! -e $root/usr/share/man/man8/stickylb-completion-powershell.8.gz ]] || { echo "a PowerShell completion page on Linux" >&2; exit 1; }
inroot id stickylb
[[ $(inroot stat -c %U /var/lib/stickylb) == stickylb ]] || { echo "/var/lib/stickylb is not owned by stickylb" >&2; exit 1; }
inroot grep -q "^snapshot_file = \"/var/lib/stickylb/pins.json\"" /etc/stickylb/lb.toml || { echo "the packaged lb.toml does not keep pins in /var/lib/stickylb" >&2; exit 1; }
inroot dpkg-query -W -f="\${Conffiles}\n" stickylb | grep -q /etc/stickylb/lb.toml || { echo "lb.toml is not a conffile" >&2; exit 1; }
if inroot sh -c "command -v systemd-analyze" >/dev/null; then
  inroot systemd-analyze verify /usr/lib/systemd/system/stickylb.service
fi
inroot dpkg -r stickylb
! inroot sh -c "command -v stickylb" >/dev/null || { echo "stickylb still installed after dpkg -r" >&2; exit 1; }
[[ -d $root/var/lib/stickylb ]] && inroot id stickylb >/dev/null || { echo "a removal (not a purge) dropped the pins or the user" >&2; exit 1; }
inroot dpkg --purge stickylb
[[ ! -e $root/var/lib/stickylb && ! -e $root/etc/stickylb/lb.toml && ! -e $root/etc/stickylb/admin.token ]] || { echo "a purge left /var/lib/stickylb, the config or the admin token" >&2; exit 1; }
! inroot id stickylb >/dev/null 2>&1 || { echo "a purge left the stickylb user" >&2; exit 1; }
echo "package ok: installs, runs version and check, removes, purges"
' _ "$top" "$deb" "$want" "$fresh"
