//go:build linux

package persist

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// A symlink planted at the journal's path is not followed: the append
// fails and is counted, and the file the link names is left as it was
// (the journal was opened without O_NOFOLLOW, unlike the snapshot, which
// is renamed into place).
func TestJournalDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pins.json")
	if err := os.Symlink(victim, path+".journal"); err != nil {
		t.Fatal(err)
	}
	stats := &Stats{}
	st := New(path, stats, slog.New(slog.DiscardHandler))
	st.Note("cas", affinity.Event{Kind: affinity.EventPin, Key: affinity.Keyer{}.Key(netip.MustParseAddrPort("10.0.0.1:1")),
		Backend: "cas1", Created: time.Now().Unix(), Version: 1})
	st.Flush()
	if b, _ := os.ReadFile(victim); string(b) != "keep me\n" {
		t.Fatalf("the journal followed its symlink and wrote %q into its target", b)
	}
	if stats.JournalFailures.Load() != 1 {
		t.Fatalf("journal failures %d, want 1", stats.JournalFailures.Load())
	}
}
