//go:build linux

package lbtest

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Exited says whether process pid has ended (gone, or a zombie its
// parent has not reaped): a process that handed over in a binary
// upgrade is no child of the test's, so the test cannot wait for it.
func Exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// PidIn is the process id a pid file names, or 0 when there is none
// (yet) or it does not parse.
func PidIn(path string) int {
	b, _ := os.ReadFile(path)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
