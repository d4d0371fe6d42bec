package nfs

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
)

// errorLog records what Options.OnError sees.
type errorLog struct {
	mu   sync.Mutex // guards errs
	errs []error
}

func (l *errorLog) add(_ string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

// TestOpenBeforeServerUp: an Origin opened while its server is down
// answers ErrUnavailable at once, then works once the server comes up,
// without being re-made.
func TestOpenBeforeServerUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil { // nothing listens there now
		t.Fatal(err)
	}
	var log errorLog
	o, err := Open("nfs://127.0.0.1:"+port+"/export?mountport="+port,
		Options{RetryBackoffMin: 1, MountRetryMax: 2, OnError: log.add})
	if err != nil {
		t.Fatalf("Open with the server down: %v", err)
	}
	defer func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	}()
	if o.Up() {
		t.Error("Up() true before any mount")
	}
	_, _, err = o.Root(t.Context())
	if !errors.Is(err, ErrNotMounted) || !backend.IsRetryable(err) {
		t.Fatalf("Root before the server is up: %v (want ErrNotMounted, retryable)", err)
	}
	if log.len() == 0 {
		t.Error("OnError saw nothing")
	}

	ln, err = net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", port, err)
	}
	newFakeNASOn(t, ln)
	if err := o.WaitConnected(t.Context()); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	if !o.Up() {
		t.Error("Up() false after WaitConnected")
	}
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); err != nil {
		t.Fatalf("GetAttr once the server is up: %v", err)
	}
}

// TestStalledServerYieldsUnavailable: a server that takes calls and never
// answers them makes each call fail retryably after CallTimeout, however
// patient the caller's ctx is.
func TestStalledServerYieldsUnavailable(t *testing.T) {
	s := newFakeNAS(t)
	// The bound also covers the mount in newFakeOrigin: generous enough for
	// a loaded machine, short enough for a test.
	o := newFakeOrigin(t, s, Options{CallTimeout: time.Second})
	s.mu.Lock()
	s.stall[procGetattr] = true
	s.mu.Unlock()
	_, err := o.GetAttr(context.Background(), rootCredForTest, []byte("FILE"))
	if !backend.IsRetryable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetAttr on a stalled server: %v (want retryable, deadline exceeded)", err)
	}
	s.mu.Lock()
	s.stall[procGetattr] = false
	s.mu.Unlock()
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); err != nil {
		t.Fatalf("GetAttr after the stall: %v", err)
	}
}

// TestServerDownThenBack: with the server gone, calls fail retryably and
// Up turns false; when it listens again on the same port the same Origin
// works again.
func TestServerDownThenBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	first := newFakeNASOn(t, ln)
	logs := &lineWaiter{lines: make(chan string, 64)}
	// RetryFor lets a call ride over a connection lost right after the
	// server came back: redialing a loopback port nothing listens on can,
	// rarely, connect the socket to itself (TCP simultaneous open).
	o := newFakeOrigin(t, first, Options{RetryBackoffMin: 1, RetryBackoffMax: 2, RetryFor: 500 * time.Millisecond,
		MountRetryMax: 2, Logger: zerolog.New(logs)})
	first.stop()
	logs.wait(t, "nfs origin down")
	if o.Up() {
		t.Error("Up() true with the server gone")
	}
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); !backend.IsRetryable(err) {
		t.Fatalf("GetAttr with the server gone: %v (want retryable)", err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("%s taken meanwhile: %v", addr, err)
	}
	newFakeNASOn(t, ln)
	if err := o.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); err != nil {
		t.Fatalf("GetAttr with the server back: %v", err)
	}
	logs.wait(t, "nfs origin up")
}

// lineWaiter is a log writer whose lines a test can wait for.
type lineWaiter struct{ lines chan string }

func (w *lineWaiter) Write(p []byte) (int, error) {
	select {
	case w.lines <- string(p):
	default: // a test that stopped reading loses nothing it waits for
	}
	return len(p), nil
}

// wait returns once a log line containing s was written.
func (w *lineWaiter) wait(t *testing.T, s string) {
	t.Helper()
	for {
		select {
		case l := <-w.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-t.Context().Done():
			t.Fatalf("no log line %q", s)
		}
	}
}
