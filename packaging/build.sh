#!/usr/bin/env bash
# Builds stickylb's .deb and .rpm into dist/: a static binary (CGO off)
# with its version, commit and build date, the hardened systemd unit,
# the template lb.toml as a config file, man pages, shell completion for
# bash, zsh and fish, and the docs.
#
#   packaging/build.sh [GOARCH ...]     default: this machine's
#   VERSION=1.2.3 packaging/build.sh    default: 0.1.0+git<commit>
#
# nfpm is a tool of the packaging/ module (go.mod there), so the
# balancer's own module carries none of its dependencies. Its modules
# are pinned by packaging/go.sum: fetch them once with
#   (cd packaging && go mod download)
# and a build then works from the module cache alone, offline:
#   GOPROXY=off packaging/build.sh            (CI builds this way)
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
version=${VERSION:-0.1.0+git$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
(($#)) || set -- "$(go env GOARCH)"
rm -f dist/*.deb dist/*.rpm
mkdir -p dist
# nfpm expands no variable in file sources, so each architecture's files
# are staged in turn where nfpm.yaml looks for them.
out=dist/stage
for arch in "$@"; do
  rm -rf "$out" && mkdir -p "$out"
  CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -o "$out/stickylb" \
    -ldflags "-s -w -X main.version=$version -X main.commit=$commit -X main.date=$date" ./cmd/stickylb
  # The packaged config is a template (packaging/lb.toml): placeholders
  # that check names, pins kept where the unit lets the service write.
  cp packaging/lb.toml "$out/lb.toml"
  # The documentation, laid out as in the source tree so that every link
  # in it holds: README.md, the example lb.toml that config.md links
  # (../lb.toml) and the copyright at the top, docs/ with the images they
  # show and docs/ecmp's BIRD configs and script (cluster.md).
  # TestShippedDocsLinksExist checks that what they link is staged here.
  mkdir -p "$out/doc/docs/ecmp"
  cp README.md lb.toml packaging/copyright "$out/doc/"
  cp docs/*.md docs/*.png "$out/doc/docs/"
  cp docs/ecmp/* "$out/doc/docs/ecmp/"
  chmod 0644 "$out"/doc/docs/ecmp/*.conf
  chmod 0755 "$out"/doc/docs/ecmp/announce.sh
  # Man pages and shell completion, from this machine's build of the
  # same source (an arm64 binary does not run here).
  mkdir -p "$out/man" "$out/completion"
  go run -ldflags "-X main.version=$version" ./cmd/stickylb man "$out/man"
  gzip -9n "$out"/man/*.8 "$out"/man/*.5
  for shell in bash zsh fish; do
    go run ./cmd/stickylb completion $shell >"$out/completion/$shell"
  done
  for packager in deb rpm; do
    (cd packaging && PKG_ARCH=$arch VERSION=$version go tool nfpm pkg --packager $packager \
      --config nfpm.yaml --target ../dist/)
  done
done
ls -l dist/*.deb dist/*.rpm
