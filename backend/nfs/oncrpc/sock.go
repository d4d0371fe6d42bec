package oncrpc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sock is a TCP connection's socket taken out of the Go runtime's network
// poller (detach): the connection's reader waits for replies in poll(2)
// itself (see readBuffer), and a socket left in the runtime's epoll set
// would also wake an idle runtime thread for every segment that arrives,
// for nothing. Writes gather their buffers in one sendmsg(2), waiting in
// poll(2) only when the socket's send buffer is full.
//
// The descriptor is reference-counted like the net package's own: Close
// shuts the socket down at once, which wakes whoever waits in poll(2) on
// it, and the descriptor is closed when the last system call using it
// has returned, so that no call ever runs on a descriptor number the
// process has since reused.
type sock struct {
	mu     sync.Mutex // guards fd's life: refs and closed
	fd     int
	refs   int  // system calls under way on fd
	closed bool // no new system call may start; fd closes at refs == 0
}

var _ syscall.RawConn = (*sock)(nil)

// detach moves tc's socket to a sock: it duplicates the descriptor and
// closes tc, which takes the original out of the runtime's poller. tc is
// closed whatever the outcome.
func detach(tc *net.TCPConn) (*sock, error) {
	raw, err := tc.SyscallConn()
	if err != nil {
		_ = tc.Close()
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(orig uintptr) {
		fd, derr = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		derr = err
	}
	// The duplicate shares the open socket (and its O_NONBLOCK); closing
	// tc removes the original from the poller and closes it.
	if cerr := tc.Close(); derr == nil && cerr != nil {
		derr = cerr
	}
	if derr != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("detach socket: %w", derr)
	}
	return &sock{fd: fd}, nil
}

// acquire returns the descriptor for one system call; release must follow.
func (s *sock) acquire() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return -1, net.ErrClosed
	}
	s.refs++
	return s.fd, nil
}

func (s *sock) release() {
	s.mu.Lock()
	s.refs--
	closeNow := s.closed && s.refs == 0
	s.mu.Unlock()
	if closeNow {
		_ = unix.Close(s.fd) // nothing to do about a failed close of a dropped socket
	}
}

// Close shuts the socket down in both directions, which wakes any reader
// or writer waiting in poll(2), and closes it once they have returned.
func (s *sock) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	fd, closeNow := s.fd, s.refs == 0
	// Under the lock: fd stays open (refs or not yet closed below).
	_ = unix.Shutdown(fd, unix.SHUT_RDWR) // fails only on a socket already down
	s.mu.Unlock()
	if closeNow {
		return unix.Close(fd)
	}
	return nil
}

// Control implements syscall.RawConn.
func (s *sock) Control(f func(fd uintptr)) error {
	fd, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	f(uintptr(fd))
	return nil
}

// Read implements syscall.RawConn: f runs until it reports done, with a
// wait in poll(2) for the socket to be readable between tries.
func (s *sock) Read(f func(fd uintptr) (done bool)) error {
	return s.rawIO(f, unix.POLLIN)
}

// Write implements syscall.RawConn, as Read for writability.
func (s *sock) Write(f func(fd uintptr) (done bool)) error {
	return s.rawIO(f, unix.POLLOUT)
}

func (s *sock) rawIO(f func(fd uintptr) bool, events int16) error {
	fd, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	for !f(uintptr(fd)) {
		if err := pollFd(fd, events, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}

// writev writes all of bufs (consuming the slice) with as few sendmsg(2)
// calls as the socket takes, waiting while the
// send buffer is full until deadline (zero: no bound), past which it
// fails with an error matching os.ErrDeadlineExceeded.
func (s *sock) writev(bufs *net.Buffers, deadline time.Time) error {
	fd, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	for len(*bufs) > 0 {
		iov := *bufs
		if len(iov) > maxIovecs {
			iov = iov[:maxIovecs]
		}
		// sendmsg rather than writev for MSG_NOSIGNAL: a peer that has
		// gone must not raise SIGPIPE (an application may Notify it).
		n, err := unix.SendmsgBuffers(fd, iov, nil, nil, unix.MSG_NOSIGNAL)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			if err := pollFd(fd, unix.POLLOUT, deadline); err != nil {
				return err
			}
			continue
		case err != nil:
			return os.NewSyscallError("sendmsg", err)
		}
		consume(bufs, n)
	}
	return nil
}

// maxIovecs is the most buffers one sendmsg(2) takes (IOV_MAX).
const maxIovecs = 1024

// consume drops the first n bytes of *bufs.
func consume(bufs *net.Buffers, n int) {
	for n > 0 && len(*bufs) > 0 {
		b := (*bufs)[0]
		if n < len(b) {
			(*bufs)[0] = b[n:]
			return
		}
		n -= len(b)
		(*bufs)[0] = nil
		*bufs = (*bufs)[1:]
	}
	for len(*bufs) > 0 && len((*bufs)[0]) == 0 {
		*bufs = (*bufs)[1:]
	}
}

// pollFd waits until fd has one of events (or an error or hang-up, which
// the next read or write reports), or deadline (zero: none) passes.
func pollFd(fd int, events int16, deadline time.Time) error {
	for {
		var ts *unix.Timespec
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			t := unix.NsecToTimespec(int64(left))
			ts = &t
		}
		fds := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Ppoll(fds[:], ts, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return os.NewSyscallError("ppoll", err)
		case n > 0:
			return nil
		}
		// Timed out: loop to check the deadline.
	}
}
