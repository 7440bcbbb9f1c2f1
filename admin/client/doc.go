// Package client is the admin API's typed client, the one `stickylb
// ctl` speaks through: it finds where a running stickylb serves (an
// address, its admin socket, or a config file's [admin]), sends the
// token only where it cannot be read on the way or taken by another
// user, and returns the API's answers as the admin package's types.
package client
