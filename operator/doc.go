// Package operator keeps the operators' decisions about backends: a
// drain (with or without a deadline), maintenance, ready again, a weight.
// A Decision outlives a reload and a restart (its file beside the pin
// snapshot) and is the same at every cluster member: each is stamped by a
// hybrid logical clock, and of two decisions about one backend the later
// stamp wins, as for pins.
//
// Decisions holds them and applies them to the backends of the pools as
// the server publishes them (Known); it takes no lock of the server's
// and calls back into none: a decision from another member (Merge) comes
// in on memberlist's goroutines, which a reload or an upgrade must never
// make wait. Its own lock is never held while it calls out: OnChange and
// OnDeadline run after it is released.
//
// The rule against the config file: a backend the file adds starts
// ready; one it removes takes its decision with it; an operator's weight
// holds while the file's weight for the backend is still the one it was
// set over, so editing the weight in the file is the newer decision.
package operator
