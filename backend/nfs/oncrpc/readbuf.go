package oncrpc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readBuffer is the buffered reader under a connection's replies, built
// to spend few system calls and wake-ups per reply:
//
//   - Small reads (headers, attributes, small replies) are served from
//     its buffer.
//   - A read into a large destination (READ data, decoded straight into
//     the caller's buffer) that finds the buffer empty goes straight from
//     the socket into the destination and, in the same readv(2), reads up
//     to aheadBytes more into the buffer: the start of the next reply
//     comes with the end of this one, so a stream of large replies costs
//     about one read each, and only those few bytes are copied twice.
//   - On a socket (a sock, out of the Go runtime's network poller), the
//     reader waits for data in poll(2) on its own thread, like a C
//     client's event loop: a reply then wakes the reader directly,
//     without the poller's epoll round trips and without handing the
//     woken goroutine from thread to thread (on a 2-core machine those
//     hand-offs cost more CPU than reading the data). It costs one
//     thread per connection, blocked in the kernel while no reply is
//     due.
//   - When it must wait while it knows that more bytes are due (the rest
//     of a fragment), it sets the socket's receive low-water mark
//     (SO_RCVLOWAT) to that many bytes, up to lowatMaxBytes, so that the
//     kernel wakes it once for all of them rather than once per segment.
//     The mark is only ever set to bytes the server must send anyway (or
//     the connection breaks, which also wakes the reader), so it cannot
//     make the reader wait for data that never comes; it is lowered back
//     to 1 before any other wait.
//
// Closing the sock shuts it down, which wakes a reader waiting in
// poll(2). The read deadline (SetDeadline) is kept here and bounds the
// poll.
//
// Every read of the socket goes through sysRead. Not safe for concurrent
// use: the connection's reader owns it.
type readBuffer struct {
	src io.Reader
	// raw is the socket (a sock: readv, poll, SO_RCVLOWAT); nil for
	// other connections (Config.Dial), read from src with plain reads
	// and deadlines set on src.
	raw      syscall.RawConn
	buf      []byte
	r, w     int       // buf[r:w] is unread
	deadline time.Time // for raw reads; zero: none
	lowat    int       // the socket's receive low-water mark as last set
	lowatOff bool      // the mark stays 1 (not a socket, or an old kernel)
	err      error     // the first read error; sticky
	// rd is the state of the raw read under way (rawRead, readFd).
	rd struct {
		fn   func(fd uintptr) bool // b.readFd, bound once
		iov  [2][]byte
		niov int
		due  int
		n    int
		err  error
	}
	// beforeWait, if set, runs when a read on the socket finds nothing
	// to read, before it waits.
	beforeWait func()
}

const (
	// directMin is the smallest destination read straight from the
	// socket rather than through the buffer.
	directMin = 4096
	// aheadBytes is how much a large read also reads ahead (see
	// readBuffer), and how much a read at the start of a record reads:
	// enough for the header of a READ reply and all of many small
	// replies.
	aheadBytes = 4096
	// lowatMinBytes is the least number of bytes due that is worth
	// raising the low-water mark for (a wake-up per segment of up to
	// 64 KiB is what it saves); lowatMaxBytes caps the mark.
	lowatMinBytes = 64 << 10
	lowatMaxBytes = 1 << 20
)

// newReadBuffer returns a readBuffer of size bytes reading from raw, a
// socket out of the runtime's poller (sock), or else from src.
func newReadBuffer(src io.Reader, raw syscall.RawConn, size int) *readBuffer {
	b := &readBuffer{src: src, raw: raw, buf: make([]byte, max(size, aheadBytes)), lowat: 1}
	b.rd.fn = b.readFd
	b.lowatOff = raw == nil || !rcvlowatSafe()
	return b
}

// rcvlowatSafe reports whether the kernel (Linux 5.10 or later) copes
// with a TCP low-water mark above the receive buffer or window: it grows
// the buffer to fit the mark and wakes the reader anyway when the sender
// cannot send more (fixes from 4.18 to 5.10). On older kernels the
// reader would wait for the stall deadline, so the mark stays 1.
func rcvlowatSafe() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 10
}

// SetDeadline bounds every read from now on until it is changed; the
// zero time removes the bound. A read past it fails with an error
// matching os.ErrDeadlineExceeded.
func (b *readBuffer) SetDeadline(t time.Time) error {
	if b.raw != nil {
		b.deadline = t
		return nil
	}
	if d, ok := b.src.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// Read reads up to len(p) bytes, with no more than len(p) due.
func (b *readBuffer) Read(p []byte) (int, error) { return b.ReadExpect(p, len(p)) }

// ReadExpect reads up to len(p) bytes: from the buffer if it holds any,
// else from the source. due (at least len(p)) is how many bytes the
// server is bound to send next (the rest of the current fragment); it
// sets how long a wait for them may be. It returns io.EOF only at the
// end of the source.
func (b *readBuffer) ReadExpect(p []byte, due int) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		b.r += n
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	b.r, b.w = 0, 0
	due = max(due, len(p))
	if len(p) >= directMin {
		// Straight into p, the next bytes into the buffer.
		n, err := b.sysRead(p, b.buf[:aheadBytes], due)
		if n > len(p) {
			b.w = n - len(p)
			n = len(p)
		}
		return n, err
	}
	if err := b.fill(due); err != nil {
		return 0, err
	}
	n := copy(p, b.buf[:b.w])
	b.r = n
	return n, nil
}

// fill reads into the empty buffer; due is as for ReadExpect. When few
// bytes are due (the start of a record, whose length is not known yet)
// it reads only aheadBytes: enough for many small replies, or for the
// header of a large one, whose data then goes straight to its
// destination instead of through the buffer.
func (b *readBuffer) fill(due int) error {
	size := len(b.buf)
	if due <= aheadBytes {
		size = aheadBytes
	}
	n, err := b.sysRead(b.buf[:size], nil, due)
	b.r, b.w = 0, n
	return err
}

// Discard skips n bytes and returns how many it skipped; fewer than n
// only with an error.
func (b *readBuffer) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if b.r == b.w {
			if b.err != nil {
				return done, b.err
			}
			if err := b.fill(n - done); err != nil {
				return done, err
			}
			continue
		}
		k := min(n-done, b.w-b.r)
		b.r += k
		done += k
	}
	return done, nil
}

// sysRead reads from the source into p and then ahead (readv), waiting
// while nothing can be read. due is how many bytes are bound to come. It
// returns a positive count, or 0 and an error; an error sticks.
func (b *readBuffer) sysRead(p, ahead []byte, due int) (int, error) {
	var n int
	var err error
	if b.raw == nil {
		n, err = b.src.Read(p)
		if n == 0 && err == nil {
			err = io.ErrNoProgress
		}
	} else {
		n, err = b.rawRead(p, ahead, due)
	}
	if err != nil {
		b.err = err
		if n > 0 {
			return n, nil // the data first; the error on the next read
		}
		return 0, err
	}
	return n, nil
}

// rawRead is sysRead on a socket. Its state lives in b (rd), so that
// a read allocates nothing.
func (b *readBuffer) rawRead(p, ahead []byte, due int) (int, error) {
	b.rd.iov[0], b.rd.iov[1] = p, ahead
	b.rd.niov = 2
	if len(ahead) == 0 {
		b.rd.niov = 1
	}
	b.rd.due = due
	// raw.Read keeps the descriptor from being closed meanwhile; readFd
	// never asks it to wait in the runtime's poller.
	rerr := b.raw.Read(b.rd.fn)
	n, err := b.rd.n, b.rd.err
	b.rd.iov[0], b.rd.iov[1], b.rd.err = nil, nil, nil
	if err == nil {
		err = rerr
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	return n, err
}

// readFd reads b.rd.iov from fd into b.rd.n and b.rd.err, waiting in
// poll(2) while nothing can be read.
func (b *readBuffer) readFd(fd uintptr) bool {
	for {
		n, err := unix.Readv(int(fd), b.rd.iov[:b.rd.niov])
		switch {
		case err == nil:
			b.rd.n, b.rd.err = n, nil
			return true
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EAGAIN):
			b.rd.n, b.rd.err = 0, err
			return true
		}
		// Hand over what the reader holds first; poll(2) then returns at
		// once if data came meanwhile.
		if b.beforeWait != nil {
			b.beforeWait()
		}
		if err = b.setLowat(int(fd), b.rd.due); err == nil {
			err = b.wait(int(fd))
		}
		if err != nil {
			b.rd.n, b.rd.err = 0, err
			return true
		}
	}
}

// setLowat sets the socket's low-water mark for a wait for due bytes.
func (b *readBuffer) setLowat(fd, due int) error {
	want := 1
	if due >= lowatMinBytes {
		want = min(due, lowatMaxBytes)
	}
	if want == b.lowat || b.lowatOff {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, want); err != nil {
		if b.lowat == 1 {
			b.lowatOff = true // a socket without one: wait per segment
			return nil
		}
		// A mark left high could outlast the bytes due: drop the
		// connection rather than risk that.
		return os.NewSyscallError("setsockopt SO_RCVLOWAT", err)
	}
	b.lowat = want
	return nil
}

// wait blocks until the socket is readable (as the low-water mark has
// it), shut down or broken, or the deadline passes.
func (b *readBuffer) wait(fd int) error { return pollFd(fd, unix.POLLIN, b.deadline) }
