//go:build !unix

package persist

// noFollow is 0 where the system has no O_NOFOLLOW (stickylb runs on
// Linux; other systems only build it).
const noFollow = 0
