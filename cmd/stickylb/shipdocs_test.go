//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shippedDocs are the files packaging/build.sh stages for
// /usr/share/doc/stickylb, as paths of the source tree, which the
// package keeps (so relative links hold in both).
func shippedDocs(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{"README.md": true, "lb.toml": true, "copyright": true}
	for _, glob := range []string{"docs/*.md", "docs/*.png", "docs/ecmp/*"} {
		paths, err := filepath.Glob("../../" + glob)
		if err != nil || len(paths) == 0 {
			t.Fatalf("%s: %v, %d files", glob, err, len(paths))
		}
		for _, p := range paths {
			out[strings.TrimPrefix(p, "../../")] = true
		}
	}
	return out
}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)#\s]+)`)
	docPath = regexp.MustCompile(`/usr/share/doc/stickylb/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
)

// Every file a shipped doc links to is shipped beside it, and every
// /usr/share/doc/stickylb path the docs, the packaged template and the
// man pages name is one the package holds (issue 35, point 6: config.md
// linked ../lb.toml and cluster.md docs/ecmp's files, neither shipped).
// packaging/test-install.sh checks the same in the installed package.
func TestShippedDocsLinksExist(t *testing.T) {
	shipped := shippedDocs(t)
	for file, text := range docFiles(t) {
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target := filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), link)))
			if !shipped[target] {
				t.Errorf("%s links %s (%s), which the package does not ship", file, link, target)
			}
		}
	}
	texts := []string{rootSections}
	for _, f := range []string{"../../packaging/lb.toml", "../../packaging/stickylb.service"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	for _, text := range docFiles(t) {
		texts = append(texts, text)
	}
	named := 0
	for _, text := range texts {
		for _, p := range docPath.FindAllString(text, -1) {
			named++
			if rel := strings.TrimPrefix(p, "/usr/share/doc/stickylb/"); !shipped[rel] && !shipped[rel+"/README.md"] && rel != "docs" {
				t.Errorf("%s is named, and the package does not ship it", p)
			}
		}
	}
	if named < 3 {
		t.Fatalf("only %d /usr/share/doc/stickylb paths found: the pattern misses them", named)
	}
}
