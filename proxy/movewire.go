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
// and backend sockets (SCM_RIGHTS); an empty one (length 0) ends the
// batch. The new process then answers how many it holds (4 bytes), none
// of which it copies yet; the old one lets those go, closing its own
// sockets, and sends moveGo, and the new one copies on. An old process
// that hears no count in time keeps every connection and sends
// moveStay, and the new one lets go of all it held. A new process whose
// old one is gone (the socket reads EOF where the go would be) copies
// on, as the old one closed its sockets before its go.

// MoveVersion is the version of the format this binary speaks. A new
// process says it in its "ready" line; an old one that hears another, or
// none, keeps its connections. Version 2 carries half-closed
// connections (Moved.HalfClosed), which a reader of version 1 would
// copy on both ways.
const MoveVersion = 2

const (
	moveMagic     = "SLBC"
	moveHeader    = len(moveMagic) + 1 + 4
	moveMax       = 4 << 10 // far more than a Moved takes
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
	if m.HalfClosed != "" && m.HalfClosed != ClientSentFIN && m.HalfClosed != BackendSentFIN {
		return m, fmt.Errorf("hand-over message: connection %s/%d is half-closed by %q, neither client nor backend", m.Listener, m.ID, m.HalfClosed)
	}
	return m, nil
}

// HandOver sends the parcels over uc. Those the new process holds are
// Gone from this one; the rest Stay. It returns how many moved.
func HandOver(uc *net.UnixConn, parcels []*Parcel) (int, error) {
	held, err := sendAll(uc, parcels)
	if err != nil {
		uc.Write([]byte{moveStay})
		for _, p := range parcels {
			p.Stay()
		}
		return 0, err
	}
	for _, p := range parcels[:held] {
		p.Gone()
	}
	for _, p := range parcels[held:] {
		p.Stay()
	}
	if _, err := uc.Write([]byte{moveGo}); err != nil {
		// This process's sockets are closed: the new one copies on
		// when it reads the end of the socket.
		return held, fmt.Errorf("telling the new process to copy: %w", err)
	}
	return held, nil
}

// sendAll sends every parcel and the end, and returns how many of them
// the new process says it holds.
func sendAll(uc *net.UnixConn, parcels []*Parcel) (int, error) {
	uc.SetDeadline(time.Now().Add(moveReplyWait + time.Duration(len(parcels))*time.Millisecond))
	for _, p := range parcels {
		b, err := encodeMoved(&p.Moved)
		if err != nil {
			return 0, err
		}
		rights := unix.UnixRights(rawFd(p.ClientFile), rawFd(p.BackendFile))
		if _, _, err := uc.WriteMsgUnix(b, rights, nil); err != nil {
			return 0, fmt.Errorf("connection %s/%d: %w", p.Listener, p.ID, err)
		}
	}
	end, _ := encodeMoved(nil)
	if _, err := uc.Write(end); err != nil {
		return 0, fmt.Errorf("ending the hand-over: %w", err)
	}
	var n [4]byte
	if _, err := io.ReadFull(uc, n[:]); err != nil {
		return 0, fmt.Errorf("the new process's count of what it holds: %w", err)
	}
	held := int(binary.BigEndian.Uint32(n[:]))
	if held > len(parcels) {
		return 0, fmt.Errorf("the new process says it holds %d of %d connections", held, len(parcels))
	}
	return held, nil
}

// Receive takes the connections a process hands to this one, each into
// its listener of listeners (by name), and returns how many it took. A
// connection it cannot take stays with the old process.
func Receive(uc *net.UnixConn, listeners map[string]*Listener) (int, error) {
	var held []*conn
	var failed error
	for failed == nil {
		m, cf, bf, err := receiveOne(uc)
		if errors.Is(err, errMoveEnd) {
			break
		}
		var c *conn
		if err == nil {
			c, err = adoptInto(listeners, m, cf, bf)
		}
		if err != nil {
			failed = err
			drain(uc) // the old process hears fewer than it sent and keeps the rest
			break
		}
		held = append(held, c)
	}
	if !copyOn(uc, len(held)) {
		for _, c := range held {
			c.dropAdopted()
		}
		return 0, errors.Join(failed, errors.New("the old process kept its connections"))
	}
	for _, c := range held {
		c.startAdopted()
	}
	return len(held), failed
}

// adoptInto adopts a connection into its listener.
func adoptInto(listeners map[string]*Listener, m Moved, cf, bf *os.File) (*conn, error) {
	l := listeners[m.Listener]
	if l == nil {
		cf.Close()
		bf.Close()
		return nil, fmt.Errorf("connection %s/%d: no listener %s here", m.Listener, m.ID, m.Listener)
	}
	return l.adopt(m, cf, bf)
}

// drain reads the rest of the batch after a failure, closing what came.
func drain(uc *net.UnixConn) {
	for {
		_, cf, bf, err := receiveOne(uc)
		if err != nil {
			return
		}
		cf.Close()
		bf.Close()
	}
}

// copyOn says how many connections this process holds and hears
// whether to copy them: yes on moveGo, and when the old process is gone
// (it closed its sockets before its go); no on moveStay or silence.
func copyOn(uc *net.UnixConn, held int) bool {
	uc.SetDeadline(time.Now().Add(2 * moveReplyWait))
	if _, err := uc.Write(binary.BigEndian.AppendUint32(nil, uint32(held))); err != nil {
		return false
	}
	var r [1]byte
	n, err := uc.Read(r[:])
	return n == 1 && r[0] == moveGo || n == 0 && errors.Is(err, io.EOF)
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

// rawFd is f's descriptor. Not f.Fd(): that puts the descriptor in
// blocking mode, and with it the connection's own socket, whose open
// file description the duplicate shares, so a connection kept here
// would then block its copy's raw reads for good.
func rawFd(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd = int(d) })
	}
	return fd
}
