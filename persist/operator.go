package persist

import (
	"encoding/json"
	"errors"
	"fmt"
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
	var file struct {
		Magic     string            `json:"magic"`
		Operators []config.Operator `json:"operators"`
	}
	if err := json.NewDecoder(&limitedReader{f, maxOperatorFile}).Decode(&file); err != nil || file.Magic != operatorMagic {
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

// limitedReader fails a read past its bound, where io.LimitReader would
// end the input quietly.
type limitedReader struct {
	f *os.File
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}
