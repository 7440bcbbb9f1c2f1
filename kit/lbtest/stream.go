//go:build linux

package lbtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Stream keeps a checked byte stream going through an echo connection:
// it writes a pattern that depends on the position (so a lost,
// duplicated or reordered byte shows) in chunks of chunk bytes, pausing
// gap between them, and reads the echo back, checking every byte and
// noting the longest wait for the next bytes to come back.
type Stream struct {
	c     *Client
	chunk int
	gap   time.Duration
	stop  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	sent     int64
	got      int64
	err      error
	maxPause time.Duration
	maxAt    time.Time // when the longest wait ended
}

// streamByte is the pattern's byte at offset i.
func streamByte(i int64) byte { return byte(i*131 + i>>9) }

// StartStream starts a stream on c (an echo backend's connection).
func StartStream(c *Client, chunk int, gap time.Duration) *Stream {
	s := &Stream{c: c, chunk: chunk, gap: gap, stop: make(chan struct{})}
	s.wg.Add(2)
	go s.write()
	go s.read()
	return s
}

func (s *Stream) write() {
	defer s.wg.Done()
	err := writePattern(s.c, s.stop, s.chunk, s.gap, func(off int64) {
		s.mu.Lock()
		s.sent = off
		s.mu.Unlock()
	})
	if err != nil {
		s.fail(err)
		return
	}
	s.c.CloseWrite()
}

// writePattern writes the pattern to c in chunks of chunk bytes, gap
// apart, until stop is closed, telling wrote (if not nil) the offset
// after each write; it returns the first write's failure.
func writePattern(c net.Conn, stop <-chan struct{}, chunk int, gap time.Duration, wrote func(off int64)) error {
	buf := make([]byte, chunk)
	for off := int64(0); ; {
		select {
		case <-stop:
			return nil
		default:
		}
		for i := range buf {
			buf[i] = streamByte(off + int64(i))
		}
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		n, err := c.Write(buf)
		off += int64(n)
		if wrote != nil {
			wrote(off)
		}
		if err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		if gap > 0 {
			select {
			case <-stop:
				return nil
			case <-time.After(gap):
			}
		}
	}
}

func (s *Stream) read() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	last := time.Now()
	for off := int64(0); ; {
		s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := s.c.R.Read(buf)
		if n > 0 {
			now := time.Now()
			s.mu.Lock()
			if d := now.Sub(last); d > s.maxPause {
				s.maxPause, s.maxAt = d, now
			}
			s.mu.Unlock()
			last = now
		}
		for i := range n {
			if buf[i] != streamByte(off) {
				s.fail(fmt.Errorf("byte %d came back as %#x, want %#x", off, buf[i], streamByte(off)))
				return
			}
			off++
		}
		s.mu.Lock()
		s.got = off
		s.mu.Unlock()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("read at %d: %w", off, err))
			return
		}
	}
}

func (s *Stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	s.c.Close()
}

// LongestWait is the longest the reader has waited for bytes, and when
// that wait ended.
func (s *Stream) LongestWait() (time.Duration, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxPause, s.maxAt
}

// ResetWait forgets the longest wait so far, to measure from now.
func (s *Stream) ResetWait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxPause, s.maxAt = 0, time.Time{}
}

// Sent is how many bytes the stream has written so far.
func (s *Stream) Sent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// Err is the stream's first failure so far, if any.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stop half-closes the stream, waits for every byte's echo and the
// backend's end, and says what went wrong, if anything, and the longest
// the reader waited for bytes while the stream was going.
func (s *Stream) Stop() (sent int64, pause time.Duration, err error) {
	close(s.stop)
	s.wg.Wait()
	s.c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && s.got != s.sent {
		s.err = fmt.Errorf("sent %d bytes, %d came back", s.sent, s.got)
	}
	return s.sent, s.maxPause, s.err
}
