//go:build !linux

package persist

import (
	"io"
	"os"
)

// allocate writes zeros from off to size where fallocate is not there,
// so the room is really held (a sparse file would hold none).
func allocate(f *os.File, off, size int64) error {
	zeros := make([]byte, 64<<10)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	for off < size {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.Write(zeros[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}
