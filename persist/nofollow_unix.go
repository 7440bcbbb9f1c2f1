//go:build unix

package persist

import "syscall"

// noFollow makes an open fail on a symbolic link: a link planted at the
// journal's path cannot make stickylb write to the file it names.
const noFollow = syscall.O_NOFOLLOW
