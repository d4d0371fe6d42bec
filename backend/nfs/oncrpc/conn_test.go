package oncrpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// pipeServer answers calls on one end of a net.Pipe, so that a client in
// a synctest bubble can be driven step by step. Calls whose first
// argument word is holdArg get no reply.
type pipeServer struct {
	mu   sync.Mutex // guards seen
	seen []uint32   // first argument word of every call received, in order
}

const holdArg = 0xdead

func (s *pipeServer) serve(nc net.Conn) {
	for {
		rec, err := readRecord(nc)
		if err != nil {
			return
		}
		var msg rpcv2.RpcMsg
		r := bytes.NewReader(rec)
		if _, err := msg.ReadFrom(r); err != nil {
			return
		}
		args, _ := io.ReadAll(r)
		arg := binary.BigEndian.Uint32(args)
		s.mu.Lock()
		s.seen = append(s.seen, arg)
		s.mu.Unlock()
		if arg == holdArg {
			continue
		}
		reply := replyMsg(msg.Xid, args[:4])
		if _, err := nc.Write(append(u32(lastFragment|uint32(len(reply))), reply...)); err != nil {
			return
		}
	}
}

func (s *pipeServer) args() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.seen...)
}

// gatedConn is the client's end of the pipe; every Write first takes a
// permit from gate (a closed gate lets all writes through).
type gatedConn struct {
	net.Conn
	gate   chan struct{}
	mu     sync.Mutex // guards writes
	writes int        // Writes begun
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes++
	g.mu.Unlock()
	<-g.gate
	return g.Conn.Write(p)
}

func (g *gatedConn) begun() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// newPipeClient returns a one-connection client whose writes pass gate,
// talking to a pipeServer. It must run inside a synctest bubble.
func newPipeClient(t *testing.T, gate chan struct{}) (*Client, *pipeServer, *gatedConn) {
	t.Helper()
	cliEnd, srvEnd := net.Pipe()
	srv := &pipeServer{}
	go srv.serve(srvEnd)
	gc := &gatedConn{Conn: cliEnd, gate: gate}
	dialed := false
	cfg := DefaultConfig("pipe")
	cfg.Conns = 1
	cfg.Dial = func(context.Context) (net.Conn, error) {
		if dialed {
			return nil, errors.New("pipe: dialled twice")
		}
		dialed = true
		return gc, nil
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		_ = srvEnd.Close()
	})
	if err := c.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c, srv, gc
}

// theConn returns the client's one ready connection.
func theConn(c *Client) *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots[0].conn
}

// echo calls the pipe server with v and checks that v comes back.
func echo(ctx context.Context, c *Client, v uint32, payload []byte) error {
	var got uint32
	req := echoReq(v, &got)
	req.Payload = payload
	if len(payload) > 0 {
		args := req.Args
		req.Args = func(e *Encoder) { args(e); e.Uint32(uint32(len(payload))) }
	}
	if err := c.Call(ctx, req); err != nil {
		return err
	}
	if got != v {
		return errors.New("wrong reply")
	}
	return nil
}

// goEcho starts echo on its own goroutine; its result comes on the
// channel returned.
func goEcho(ctx context.Context, c *Client, v uint32, payload []byte) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- echo(ctx, c, v, payload) }()
	return errc
}

// While one call writes, the others only queue their records: none of
// them enters Write, and the writer sends them all before it returns.
func TestCallsQueueBehindTheWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		c, srv, gc := newPipeClient(t, gate)
		const n = 5
		errs := []<-chan error{goEcho(t.Context(), c, 100, nil)}
		synctest.Wait() // the first call is the writer, held in Write
		for i := range n {
			errs = append(errs, goEcho(t.Context(), c, uint32(101+i), nil))
		}
		synctest.Wait()
		cn := theConn(c)
		cn.mu.Lock()
		queued, writing := len(cn.queue), cn.writing
		cn.mu.Unlock()
		if queued != n || !writing || gc.begun() != 1 {
			t.Fatalf("queued %d writing %v, Writes begun %d; want %d queued behind one Write", queued, writing, gc.begun(), n)
		}
		close(gate)
		for _, errc := range errs {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
		if got := srv.args(); len(got) != n+1 || got[0] != 100 {
			t.Errorf("server saw %v", got)
		}
	})
}

// A call cancelled while its record waits in the queue returns at once
// and its record is never sent.
func TestCancelWhileQueuedIsNeverSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		c, srv, _ := newPipeClient(t, gate)
		first := goEcho(t.Context(), c, 1, nil)
		synctest.Wait() // held in Write
		ctx, cancel := context.WithCancel(t.Context())
		second := goEcho(ctx, c, 2, nil)
		synctest.Wait() // queued behind it
		cancel()
		if err := <-second; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled queued call: %v", err)
		}
		close(gate)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := echo(t.Context(), c, 3, nil); err != nil {
			t.Fatal(err)
		}
		if got := srv.args(); len(got) != 2 || got[0] != 1 || got[1] != 3 {
			t.Errorf("server saw %v, want [1 3]", got)
		}
	})
}

// A call cancelled while another call writes its record does not return
// (its caller could reuse the payload) until that write is over.
func TestCancelWhileBeingWrittenWaitsForTheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		c, srv, _ := newPipeClient(t, gate)
		first := goEcho(t.Context(), c, 1, nil)
		synctest.Wait() // the writer, held in Write
		ctx, cancel := context.WithCancel(t.Context())
		second := goEcho(ctx, c, holdArg, []byte("payload!"))
		synctest.Wait()    // queued
		gate <- struct{}{} // the first record goes; the writer takes the second
		synctest.Wait()    // and is held writing it
		cn := theConn(c)
		cn.mu.Lock()
		sending := 0
		for _, cl := range cn.pending {
			if cl.state.Load() == callSending {
				sending++
			}
		}
		cn.mu.Unlock()
		if sending != 1 {
			t.Fatalf("%d calls being written, want 1", sending)
		}
		cancel()
		synctest.Wait()
		select {
		case err := <-second:
			t.Fatalf("returned while its record was being written: %v", err)
		default:
		}
		close(gate)
		if err := <-second; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v", err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if got := srv.args(); len(got) != 2 || got[0] != 1 || got[1] != holdArg {
			t.Errorf("server saw %v", got)
		}
	})
}

// Request.Deadline ends a call the server does not answer, and only that
// call: the connection stays.
func TestDeadlineEndsOnlyThatCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		close(gate)
		c, _, _ := newPipeClient(t, gate)
		start := time.Now()
		var got uint32
		req := echoReq(holdArg, &got)
		req.Deadline = start.Add(time.Second)
		err := c.Call(context.Background(), req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unanswered call with a deadline: %v", err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("ended after %v, want the deadline (1s)", waited)
		}
		if err := echo(t.Context(), c, 8, nil); err != nil {
			t.Fatalf("call after the deadline: %v", err)
		}
		req.Deadline = time.Now() // already passed: not even sent
		if err := c.Call(context.Background(), req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call past its deadline: %v", err)
		}
	})
}

// A reply's verifier body (a server may send AUTH_SHORT) is skipped with
// its padding.
func TestReplyVerifierBodySkipped(t *testing.T) {
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		fc.send(replyWith(c.xid, &rpcv2.ReplyBody_MSG_ACCEPTED{Areply: rpcv2.AcceptedReply{
			Verf:      rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SHORT, Body: []byte{1, 2, 3, 4, 5}},
			ReplyData: &rpcv2.AcceptedReplyData_SUCCESS{},
		}}, c.args), 0)
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	var got uint32
	if err := c.Call(t.Context(), echoReq(42, &got)); err != nil || got != 42 {
		t.Fatalf("call: %v (got %d)", err, got)
	}
}

// tcpPair returns a sock (the client end, out of the runtime's poller)
// and the server end of a loopback TCP connection.
func tcpPair(t *testing.T) (*sock, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s, err := detach(nc.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		_ = peer.Close()
	})
	return s, peer
}

// A large read goes straight into its destination, bytes sent after it
// are read ahead, and a read that must wait for many bytes (the low-water
// mark raised) still gets them however the sender splits them.
func TestReadBufferDirectReadAndReadAhead(t *testing.T) {
	s, peer := tcpPair(t)
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 13)
	}
	next := []byte("next reply")
	go func() {
		for p := data; len(p) > 0; p = p[min(len(p), 50_000):] {
			_, _ = peer.Write(p[:min(len(p), 50_000)])
		}
		_, _ = peer.Write(next)
	}()
	b := newReadBuffer(nil, s, 64<<10)
	got := make([]byte, len(data))
	for off := 0; off < len(got); {
		n, err := b.ReadExpect(got[off:], len(got)-off)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		off += n
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	rest := make([]byte, len(next))
	if _, err := io.ReadFull(b, rest); err != nil || !bytes.Equal(rest, next) {
		t.Fatalf("after the large read: %q, %v", rest, err)
	}
}

// Closing the sock wakes a reader waiting in poll(2), which then fails;
// the descriptor is closed only once that reader is out.
func TestSockCloseWakesWaitingReader(t *testing.T) {
	s, _ := tcpPair(t)
	b := newReadBuffer(nil, s, 4096)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 10)) // nothing comes
		errc <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("read on a closed sock succeeded")
	}
	if _, err := s.acquire(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("acquire after Close: %v", err)
	}
	s.mu.Lock()
	refs := s.refs
	s.mu.Unlock()
	if refs != 0 {
		t.Errorf("%d references left", refs)
	}
}

// A read past the deadline fails with os.ErrDeadlineExceeded.
func TestReadBufferDeadline(t *testing.T) {
	s, _ := tcpPair(t)
	b := newReadBuffer(nil, s, 4096)
	if err := b.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
}

// Writing to a peer that has gone fails with an error and raises no
// SIGPIPE (an application may have asked to be notified of those).
func TestSockWriteToGonePeerRaisesNoSIGPIPE(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGPIPE, syscall.SIGALRM)
	defer signal.Stop(sigs)
	s, peer := tcpPair(t)
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	var err error
	// The first writes may still go out; the peer's reset ends them.
	for range 100 {
		bufs := net.Buffers{make([]byte, 64<<10)}
		if err = s.writev(&bufs, time.Time{}); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v", err)
	}
	// The runtime hands pending signals over lowest number first, so a
	// SIGPIPE (13) raised by the writes comes before this SIGALRM (14).
	if err := syscall.Kill(os.Getpid(), syscall.SIGALRM); err != nil {
		t.Fatal(err)
	}
	if sig := <-sigs; sig != syscall.SIGALRM {
		t.Errorf("write raised %v", sig)
	}
}
