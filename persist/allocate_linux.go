package persist

import (
	"os"
	"syscall"
)

// allocate gives f blocks from off to size, so the room is really held
// (a sparse file would hold none).
func allocate(f *os.File, off, size int64) error {
	return syscall.Fallocate(int(f.Fd()), 0, off, size-off)
}
