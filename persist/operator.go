package persist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/stickylb/stickylb/config"
)

// maxOperatorFile bounds what LoadOperators reads: a decision per backend
// is a hundred bytes or so.
const maxOperatorFile = 16 << 20

// SaveOperators writes the operators' decisions about backends to path
// atomically (write, fsync, rename), as a snapshot is written.
func SaveOperators(path string, ops []config.Operator) error {
	b, err := json.Marshal(struct {
		Magic     string            `json:"magic"`
		Operators []config.Operator `json:"operators"`
	}{operatorMagic, ops})
	if err != nil {
		return err
	}
	if err := writeAtomic(path, b); err != nil {
		return fmt.Errorf("write operator decisions %s: %w", path, err)
	}
	return nil
}

const operatorMagic = "stickylb-operator-decisions"

// LoadOperators reads what SaveOperators wrote; none when the file does
// not exist. Decisions that are not valid are left out.
func LoadOperators(path string) ([]config.Operator, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("operator decisions %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOperatorFile+1))
	if err == nil && len(b) > maxOperatorFile {
		err = errors.New("file too large")
	}
	var file struct {
		Magic     string            `json:"magic"`
		Operators []config.Operator `json:"operators"`
	}
	if err == nil {
		err = json.Unmarshal(b, &file)
	}
	if err != nil || file.Magic != operatorMagic {
		return nil, fmt.Errorf("operator decisions %s: not a file stickylb wrote (%v): starting with every backend as the config says", path, err)
	}
	out := file.Operators[:0]
	for _, op := range file.Operators {
		if op.Valid() {
			out = append(out, op)
		}
	}
	return out, nil
}
