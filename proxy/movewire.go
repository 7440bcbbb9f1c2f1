//go:build linux

package proxy

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The hand-over of connections speaks over a SOCK_SEQPACKET socket pair,
// one message per connection, so a message and its two descriptors
// arrive whole or not at all. A message is moveMagic, the format's
// version, the length of what follows and Moved as JSON, with the client
// and backend sockets (SCM_RIGHTS). The new process answers each with
// moveAck once it holds the connection but before it copies; the old one
// then closes its own sockets and sends moveGo, or moveStay when it keeps
// the connection after all, and the new one lets go of it. An empty
// message (length 0) ends the hand-over.

// MoveVersion is the version of the format this binary speaks. A new
// process says it in its "ready" line; an old one that hears another, or
// none, keeps its connections.
const MoveVersion = 1

const (
	moveMagic     = "SLBC"
	moveHeader    = len(moveMagic) + 1 + 4
	moveMax       = 4 << 10 // far more than a Moved takes
	moveAck       = 'a'
	moveGo        = 'g'
	moveStay      = 's'
	moveReplyWait = 5 * time.Second
)

// MoveSockets makes the socket pair the hand-over speaks over: this
// process's end and the new process's, to pass it as a file.
func MoveSockets() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("the connections' hand-over socket pair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "hand-over (old)")
	defer mine.Close()
	c, err := net.FileConn(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("the connections' hand-over socket: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "hand-over (new)"), nil
}

// encodeMoved is a message's bytes without its descriptors; nil Moved
// is the end.
func encodeMoved(m *Moved) ([]byte, error) {
	var body []byte
	if m != nil {
		var err error
		if body, err = json.Marshal(m); err != nil {
			return nil, err
		}
	}
	if len(body) > moveMax {
		return nil, fmt.Errorf("connection %s/%d: %d bytes to describe, more than %d", m.Listener, m.ID, len(body), moveMax)
	}
	b := append([]byte(moveMagic), MoveVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// errMoveEnd is the end of the hand-over.
var errMoveEnd = errors.New("end of the hand-over")

// decodeMoved reads a message's bytes: errMoveEnd for the end.
func decodeMoved(b []byte) (Moved, error) {
	var m Moved
	if len(b) < moveHeader || string(b[:len(moveMagic)]) != moveMagic {
		return m, fmt.Errorf("hand-over message of %d bytes: not one", len(b))
	}
	if v := b[len(moveMagic)]; v != MoveVersion {
		return m, fmt.Errorf("hand-over message of version %d; this binary speaks %d", v, MoveVersion)
	}
	n := binary.BigEndian.Uint32(b[len(moveMagic)+1:])
	body := b[moveHeader:]
	switch {
	case n > moveMax || int(n) != len(body):
		return m, fmt.Errorf("hand-over message says %d bytes and has %d", n, len(body))
	case n == 0:
		return m, errMoveEnd
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, fmt.Errorf("hand-over message: %w", err)
	}
	if !m.Client.IsValid() || m.Listener == "" || m.Backend == "" {
		return m, fmt.Errorf("hand-over message: connection %s/%d lacks its client, listener or backend", m.Listener, m.ID)
	}
	return m, nil
}

// send hands p over and waits for the new process to hold it.
func send(uc *net.UnixConn, p *Parcel) error {
	b, err := encodeMoved(&p.Moved)
	if err != nil {
		return err
	}
	rights := unix.UnixRights(int(p.ClientFile.Fd()), int(p.BackendFile.Fd()))
	uc.SetDeadline(time.Now().Add(moveReplyWait))
	if _, _, err := uc.WriteMsgUnix(b, rights, nil); err != nil {
		return fmt.Errorf("connection %s/%d: %w", p.Listener, p.ID, err)
	}
	return expect(uc, moveAck)
}

// expect reads a one-byte reply.
func expect(uc *net.UnixConn, want byte) error {
	var r [1]byte
	n, err := uc.Read(r[:])
	switch {
	case err != nil:
		return fmt.Errorf("the other process's answer: %w", err)
	case n != 1 || r[0] != want:
		return fmt.Errorf("the other process answered %q, not %q", r[:n], want)
	}
	return nil
}

// HandOver sends the parcels over uc, one at a time. Each the new
// process holds is Gone from this one; on the first failure the rest
// Stay. It returns how many moved.
func HandOver(uc *net.UnixConn, parcels []*Parcel) (int, error) {
	for i, p := range parcels {
		if err := send(uc, p); err != nil {
			// The new process copies only after moveGo: what it did
			// not acknowledge, or did and hears no go for, is not
			// copied there.
			uc.Write([]byte{moveStay})
			for _, q := range parcels[i:] {
				q.Stay()
			}
			return i, err
		}
		p.Gone()
		if _, err := uc.Write([]byte{moveGo}); err != nil {
			for _, q := range parcels[i+1:] {
				q.Stay()
			}
			return i + 1, fmt.Errorf("connection %s/%d: %w", p.Listener, p.ID, err)
		}
	}
	end, _ := encodeMoved(nil)
	uc.Write(end)
	return len(parcels), nil
}

// Receive takes the connections a process hands to this one, each into
// its listener of listeners (by name), until the end of the hand-over.
// It returns how many it took; a connection it cannot take stays with
// the old process.
func Receive(uc *net.UnixConn, listeners map[string]*Listener) (int, error) {
	taken := 0
	for {
		m, cf, bf, err := receiveOne(uc)
		switch {
		case errors.Is(err, errMoveEnd):
			return taken, nil
		case err != nil:
			return taken, err
		}
		l := listeners[m.Listener]
		if l == nil {
			cf.Close()
			bf.Close()
			return taken, fmt.Errorf("connection %s/%d: no listener %s here", m.Listener, m.ID, m.Listener)
		}
		c, err := l.adopt(m, cf, bf)
		if err != nil {
			return taken, err
		}
		if ok, err := verdict(uc); !ok {
			c.dropAdopted()
			if err != nil {
				return taken, err
			}
			continue
		}
		c.startAdopted()
		taken++
	}
}

// verdict acknowledges a connection and hears whether to copy it: yes
// on moveGo, and when the old process is gone (it closed its sockets
// before its go), no on moveStay.
func verdict(uc *net.UnixConn) (bool, error) {
	uc.SetDeadline(time.Now().Add(2 * moveReplyWait))
	if _, err := uc.Write([]byte{moveAck}); err != nil {
		return false, fmt.Errorf("acknowledging a connection: %w", err)
	}
	var r [1]byte
	n, err := uc.Read(r[:])
	if n == 1 && r[0] == moveStay {
		return false, nil
	}
	if n == 1 && r[0] == moveGo || errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, fmt.Errorf("the old process's verdict: %q %v", r[:n], err)
}

// receiveOne reads one message and its two sockets.
func receiveOne(uc *net.UnixConn) (Moved, *os.File, *os.File, error) {
	buf := make([]byte, moveHeader+moveMax)
	oob := make([]byte, unix.CmsgSpace(2*4))
	uc.SetDeadline(time.Now().Add(time.Minute))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return Moved{}, nil, nil, fmt.Errorf("reading the hand-over: %w", err)
	}
	files, ferr := rights(oob[:oobn])
	m, err := decodeMoved(buf[:n])
	if err == nil && ferr != nil {
		err = ferr
	}
	if err == nil && len(files) != 2 {
		err = fmt.Errorf("connection %s/%d came with %d sockets, not 2", m.Listener, m.ID, len(files))
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return m, nil, nil, err
	}
	return m, files[0], files[1], nil
}

// rights are the descriptors a message carried.
func rights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("hand-over message's descriptors: %w", err)
	}
	var files []*os.File
	for _, msg := range msgs {
		fds, err := unix.ParseUnixRights(&msg)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "handed-over socket"))
		}
	}
	return files, nil
}

// FileUnixConn makes the new process's end of MoveSockets, passed as a
// file, a connection.
func FileUnixConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("the connections' hand-over socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("the connections' hand-over socket is a %T", c)
	}
	return uc, nil
}
