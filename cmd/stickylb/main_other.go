//go:build !linux

// Command stickylb is a sticky layer-4 TCP load balancer. It runs on Linux
// only; this is what it says anywhere else.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "stickylb runs on Linux only (this is %s/%s): it relies on splice(2), TCP_INFO and IP_BIND_ADDRESS_NO_PORT.\n",
		runtime.GOOS, runtime.GOARCH)
	os.Exit(1)
}
