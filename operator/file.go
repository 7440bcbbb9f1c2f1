package operator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/stickylb/stickylb/persist"
)

// maxFile bounds what Load reads: a decision per backend is a hundred
// bytes or so.
const maxFile = 16 << 20

const magic = "stickylb-operator-decisions"

// Save writes decisions to path atomically (write, fsync, rename), as a
// pin snapshot is written.
func Save(path string, ds []Decision) error {
	b, err := json.Marshal(struct {
		Magic     string     `json:"magic"`
		Decisions []Decision `json:"operators"`
	}{magic, ds})
	if err != nil {
		return err
	}
	if err := persist.WriteAtomic(path, b); err != nil {
		return fmt.Errorf("write operator decisions %s: %w", path, err)
	}
	return nil
}

// Load reads what Save wrote; none when the file does not exist. A
// decision that does not decode or is not valid (one a newer version
// wrote, say) is left out, not the whole file.
func Load(path string) ([]Decision, error) {
	f, err := persist.OpenNoFollow(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("operator decisions %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err == nil && len(b) > maxFile {
		err = errors.New("file too large")
	}
	var file struct {
		Magic     string            `json:"magic"`
		Decisions []json.RawMessage `json:"operators"`
	}
	if err == nil {
		err = json.Unmarshal(b, &file)
	}
	if err != nil || file.Magic != magic {
		return nil, fmt.Errorf("operator decisions %s: not a file stickylb wrote (%v): starting with every backend as the config says", path, err)
	}
	var out []Decision
	for _, raw := range file.Decisions {
		var d Decision
		if json.Unmarshal(raw, &d) == nil && d.Valid() {
			out = append(out, d)
		}
	}
	return out, nil
}
