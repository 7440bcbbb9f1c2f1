package health

import (
	"fmt"
	"unicode/utf8"
)

// A failure's message can quote what a backend sent (net/http quotes a
// malformed status line whole), and what a check returns is stored: as a
// backend's last check and down reason in /api/backends, in the events,
// in the log. A stored 150 MiB status line made /api/backends 157 MB
// (issue 33), so every error a probe or a Checker hands on is clipped:
// one port's failure to maxErrText bytes, a check's whole result (the
// failures of every port and probe, joined) to maxCheckErrText.
const (
	maxErrText      = 256
	maxCheckErrText = 1024
	// maxKept bounds how many of a clipped error's parts stay
	// reachable through Unwrap.
	maxKept = 16
)

// clipped is an error whose message was cut. It unwraps to the parts of
// the original whose own messages fit, so errors.Is and errors.As still
// find a local errno (localerr), a timeout or a refusal (the failure
// metrics), but it holds no part whose message is over the bound.
type clipped struct {
	text string
	kept []error
}

func (e *clipped) Error() string   { return e.text }
func (e *clipped) Unwrap() []error { return e.kept }

// clipError returns err unchanged when its message is at most limit
// bytes, and otherwise a clipped error: the message's first limit bytes
// (cut on a character boundary) and how many bytes were left off.
func clipError(err error, limit int) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	if len(text) <= limit {
		return err
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	// Sprintf copies, so the clipped error does not keep the original
	// message alive through a substring of it.
	return &clipped{
		text: fmt.Sprintf("%s ... (%d bytes more)", text[:cut], len(text)-cut),
		kept: fitting(err, limit, nil),
	}
}

// fitting appends to out the outermost errors of err's tree whose
// messages are at most limit bytes, up to maxKept in all.
func fitting(err error, limit int, out []error) []error {
	if err == nil || len(out) >= maxKept {
		return out
	}
	if len(err.Error()) <= limit {
		return append(out, err)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return fitting(u.Unwrap(), limit, out)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = fitting(e, limit, out)
		}
	}
	return out
}
