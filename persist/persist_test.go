package persist

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/affinity"
)

// No bytes read as a journal crash the reader or count more records than
// lines.
func FuzzJournal(f *testing.F) {
	f.Add([]byte(`{"pool":"cas","client":"10.0.0.1","backend":"cas1","created":1,"at":1}` + "\n" + `{"pool":"cas","client":"10.0.0.1"}`))
	f.Add([]byte("{\"pool\":\"cas\",\"client\":\"[2001:db8::1]:5\",\"backend\":\"x\"}\n{"))
	f.Add([]byte(strings.Repeat("x", 5000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		applied, bad, _ := readJournal(bytes.NewReader(b), func(r recordJSON) bool {
			_, err := affinity.ParseKey(r.Client)
			return err == nil
		})
		if lines := bytes.Count(b, []byte("\n")) + 1; applied+bad > lines {
			t.Fatalf("%d applied and %d bad from %d lines", applied, bad, lines)
		}
	})
}

// No bytes read as a snapshot crash the reader.
func FuzzSnapshot(f *testing.F) {
	f.Add([]byte(`{"magic":"stickylb-pins","version":1,"pools":{"cas":{"key":"src-ip","ipv4_prefix":24,"ipv6_prefix":64,"pins":[{"client":"10.0.0.1","backend":"cas1","created":1,"last_seen":1}]}}}`))
	f.Add([]byte(`{"magic":"x"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "pins.json")
		os.WriteFile(path, b, 0o600)
		snap, err := readSnapshot(path)
		if err == nil && snap == nil {
			t.Fatal("an existing file read as no snapshot")
		}
	})
}
