#!/usr/bin/env bash
# Installs the built .deb into a throwaway copy of this Debian system and
# checks that it works there: `stickylb version` prints the packaged
# version, `stickylb check` accepts the packaged lb.toml, the man pages
# and shell completion are in place, the service's user owns its state
# directory, the unit passes `systemd-analyze
# verify` where it is installed, and a removal leaves no binary behind.
#
# The copy is an overlay of / with a tmpfs on top, mounted in a private
# mount namespace and entered with chroot: nothing reaches the host, and
# no network or mirror is needed. Needs root (CI runs as root).
#
#   packaging/test-install.sh dist/stickylb_*_amd64.deb
set -euo pipefail
deb=$(realpath "$1")
[[ $(id -u) == 0 ]] || { echo "test-install.sh needs root (a mount namespace and chroot)" >&2; exit 1; }
! command -v stickylb >/dev/null || { echo "stickylb is installed on this host; the test needs a system without it" >&2; exit 1; }
want=$(dpkg-deb -f "$deb" Version)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
unshare --mount --propagation private bash -euo pipefail -c '
top=$1 deb=$2 want=$3
mount -t tmpfs tmpfs "$top"
mkdir -p "$top"/upper "$top"/work "$top"/root
mount -t overlay overlay -o lowerdir=/,upperdir="$top"/upper,workdir="$top"/work "$top"/root
root=$top/root
mount -t proc proc "$root"/proc
mount --rbind /dev "$root"/dev
mount -t tmpfs tmpfs "$root"/run # no systemd runs in the copy: the scripts must not need it
cp "$deb" "$root"/tmp/stickylb.deb
inroot() { chroot "$root" "$@"; }
inroot dpkg -i /tmp/stickylb.deb
got=$(inroot stickylb version)
echo "installed: $got"
[[ $got == "stickylb $want commit "* ]] || { echo "stickylb version says \"$got\", want version $want" >&2; exit 1; }
inroot stickylb check -c /etc/stickylb/lb.toml
for f in /usr/share/man/man8/stickylb.8.gz /usr/share/man/man8/stickylb-ctl-drain.8.gz /usr/share/bash-completion/completions/stickylb \
  /usr/share/zsh/vendor-completions/_stickylb /usr/share/fish/vendor_completions.d/stickylb.fish; do
  [[ -s $root$f ]] || { echo "the package lacks $f" >&2; exit 1; }
done
zcat "$root"/usr/share/man/man8/stickylb-run.8.gz | grep -q "config file" || { echo "stickylb-run(8) does not document -c" >&2; exit 1; }
inroot id stickylb
[[ $(inroot stat -c %U /var/lib/stickylb) == stickylb ]] || { echo "/var/lib/stickylb is not owned by stickylb" >&2; exit 1; }
inroot grep -q "^snapshot_file = \"/var/lib/stickylb/pins.json\"" /etc/stickylb/lb.toml || { echo "the packaged lb.toml does not keep pins in /var/lib/stickylb" >&2; exit 1; }
inroot dpkg-query -W -f="\${Conffiles}\n" stickylb | grep -q /etc/stickylb/lb.toml || { echo "lb.toml is not a conffile" >&2; exit 1; }
if inroot sh -c "command -v systemd-analyze" >/dev/null; then
  inroot systemd-analyze verify /usr/lib/systemd/system/stickylb.service
fi
inroot dpkg -r stickylb
! inroot sh -c "command -v stickylb" >/dev/null || { echo "stickylb still installed after dpkg -r" >&2; exit 1; }
echo "package ok: installs, runs version and check, removes"
' _ "$top" "$deb" "$want"
