package oncrpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// fakeServer is an in-process ONC RPC server whose behaviour each test
// scripts through handle, which runs on the connection's goroutine.
type fakeServer struct {
	t        testing.TB
	ln       net.Listener
	handle   func(fc *fakeConn, c fakeCall)
	accepted chan *fakeConn
	wg       sync.WaitGroup
	mu       sync.Mutex // guards conns
	conns    []*fakeConn
}

type fakeCall struct {
	xid, prog, vers, proc uint32
	cred                  rpcv2.OpaqueAuth
	args                  []byte
}

type fakeConn struct {
	nc net.Conn
	mu sync.Mutex // serialises writes
}

func newFakeServerB(b *testing.B) *fakeServer {
	return newFakeServer(b, func(fc *fakeConn, c fakeCall) { fc.send(replyMsg(c.xid, c.args), 0) })
}

func newFakeServer(t testing.TB, handle func(fc *fakeConn, c fakeCall)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, handle: handle, accepted: make(chan *fakeConn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{nc: nc}
			s.mu.Lock()
			s.conns = append(s.conns, fc)
			s.mu.Unlock()
			s.accepted <- fc
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(fc)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, fc := range s.conns {
		_ = fc.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) serve(fc *fakeConn) {
	for {
		rec, err := readRecord(fc.nc)
		if err != nil {
			return
		}
		r := bytes.NewReader(rec)
		var msg rpcv2.RpcMsg
		if _, err := msg.ReadFrom(r); err != nil {
			s.t.Errorf("server: bad call: %v", err)
			return
		}
		body, ok := msg.Body.(*rpcv2.RpcMsgBody_CALL)
		if !ok {
			s.t.Errorf("server: not a call: %T", msg.Body)
			return
		}
		args, _ := io.ReadAll(r)
		s.handle(fc, fakeCall{xid: msg.Xid, prog: body.Cbody.Prog, vers: body.Cbody.Vers, proc: body.Cbody.Proc, cred: body.Cbody.Cred, args: args})
	}
}

func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for {
		var h [4]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		v := binary.BigEndian.Uint32(h[:])
		frag := make([]byte, v&maxFragmentLen)
		if _, err := io.ReadFull(r, frag); err != nil {
			return nil, err
		}
		rec = append(rec, frag...)
		if v&lastFragment != 0 {
			return rec, nil
		}
	}
}

// replyMsg encodes an accepted SUCCESS reply to xid followed by results.
func replyMsg(xid uint32, results []byte) []byte {
	return replyWith(xid, &rpcv2.ReplyBody_MSG_ACCEPTED{Areply: rpcv2.AcceptedReply{
		Verf:      rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE},
		ReplyData: &rpcv2.AcceptedReplyData_SUCCESS{},
	}}, results)
}

func replyWith(xid uint32, rb rpcv2.ReplyBody, results []byte) []byte {
	var b bytes.Buffer
	msg := rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: rb}}
	if _, err := msg.WriteTo(&b); err != nil {
		panic(err)
	}
	b.Write(results)
	return b.Bytes()
}

// send writes msg as one record split into fragments of at most fragLen
// bytes (0: one fragment).
func (fc *fakeConn) send(msg []byte, fragLen int) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fragLen <= 0 {
		fragLen = len(msg)
	}
	var out []byte
	for {
		n := min(fragLen, len(msg))
		h := uint32(n)
		if n == len(msg) {
			h |= lastFragment
		}
		out = binary.BigEndian.AppendUint32(out, h)
		out = append(out, msg[:n]...)
		msg = msg[n:]
		if len(msg) == 0 {
			break
		}
	}
	_, _ = fc.nc.Write(out) // the client may have gone; tests check the client side
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func newTestClient(t *testing.T, addr string, conns int) *Client {
	t.Helper()
	cfg := DefaultConfig(addr)
	cfg.Conns = conns
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		checkNoClientGoroutines(t)
	})
	return c
}

// checkNoClientGoroutines fails if a goroutine of a closed client is left.
// Close waits for them, so no polling is needed.
func checkNoClientGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "oncrpc.(*Client).run") || strings.Contains(g, "oncrpc.(*conn).readLoop") ||
			strings.Contains(g, "oncrpc.(*conn).watch") {
			t.Errorf("goroutine left after Close:\n%s", g)
		}
	}
}

// echoReq sends v as the argument and expects it back.
func echoReq(v uint32, got *uint32) *Request {
	return &Request{
		Prog: 100003, Vers: 3, Proc: 1,
		Args:  func(e *Encoder) { e.Uint32(v) },
		Reply: func(d *Decoder) error { *got = d.Uint32(); return nil },
	}
}

func TestPipelinedRepliesOutOfOrder(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	var held []fakeCall
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		mu.Lock()
		held = append(held, c)
		all := len(held) == n
		mu.Unlock()
		if !all {
			return
		}
		// Only once all n calls are in (so they were all outstanding on
		// one connection at once), answer them newest first.
		for i := n - 1; i >= 0; i-- {
			fc.send(replyMsg(held[i].xid, held[i].args), 0)
		}
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got uint32
			if err := c.Call(t.Context(), echoReq(uint32(i)+100, &got)); err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			if got != uint32(i)+100 {
				t.Errorf("call %d got reply %d", i, got)
			}
		}()
	}
	wg.Wait()
}

func TestMultiFragmentReplyDecodedIntoCallerBuffer(t *testing.T) {
	data := make([]byte, 300_001)
	for i := range data {
		data[i] = byte(i * 7)
	}
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		var res Encoder
		res.Uint32(0xfeedface)
		res.Opaque(data)
		fc.send(replyMsg(c.xid, res.buf), 4093) // odd fragment size
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	buf := make([]byte, len(data)+10)
	var n int
	var tag uint32
	err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 6, Reply: func(d *Decoder) error {
		tag = d.Uint32()
		n = d.OpaqueInto(buf)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tag != 0xfeedface || n != len(data) || !bytes.Equal(buf[:n], data) {
		t.Fatalf("tag %x n %d, data equal %v", tag, n, bytes.Equal(buf[:n], data))
	}
}

func TestAuthSysAndPayloadOnTheWire(t *testing.T) {
	type seen struct {
		c    fakeCall
		auth rpcv2.AuthsysParms
	}
	got := make(chan seen, 1)
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		var a rpcv2.AuthsysParms
		if _, err := a.ReadFrom(bytes.NewReader(c.cred.Body)); err != nil {
			t.Errorf("authsys: %v", err)
		}
		got <- seen{c, a}
		fc.send(replyMsg(c.xid, nil), 0)
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	gids := make([]uint32, 20)
	for i := range gids {
		gids[i] = uint32(1000 + i)
	}
	payload := []byte("hello") // 5 bytes: 3 bytes of padding follow
	err := c.Call(t.Context(), &Request{
		Prog: 100003, Vers: 3, Proc: 7,
		Auth:    &AuthSys{UID: 1001, GID: 1002, GIDs: gids},
		Args:    func(e *Encoder) { e.Uint64(42); e.Uint32(uint32(len(payload))) },
		Payload: payload,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.c.prog != 100003 || s.c.vers != 3 || s.c.proc != 7 || s.c.cred.Flavor != rpcv2.AUTH_SYS {
		t.Errorf("header %+v", s.c)
	}
	if s.auth.Uid != 1001 || s.auth.Gid != 1002 || s.auth.Machinename != "nascache" || len(s.auth.Gids) != maxAuthGroups || s.auth.Gids[15] != 1015 {
		t.Errorf("auth %+v", s.auth)
	}
	want := append(append(binary.BigEndian.AppendUint64(nil, 42), u32(5)...), "hello\x00\x00\x00"...)
	if !bytes.Equal(s.c.args, want) {
		t.Errorf("args %x, want %x", s.c.args, want)
	}
}

func TestBrokenConnectionFailsRetryablyAndReconnects(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			_ = fc.nc.Close() // mid-call: request read, no reply
			return
		}
		fc.send(replyMsg(c.xid, c.args), 0)
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	<-srv.accepted
	var got uint32
	err := c.Call(t.Context(), echoReq(1, &got))
	if !errors.Is(err, ErrConnLost) || !IsRetryable(err) {
		t.Fatalf("call on broken connection: %v, want retryable ErrConnLost", err)
	}
	<-srv.accepted // the client redialled
	if err := c.Call(t.Context(), echoReq(2, &got)); err != nil || got != 2 {
		t.Fatalf("call after reconnect: %v (got %d)", err, got)
	}
}

func TestCancelledCallLeavesConnectionUsable(t *testing.T) {
	first := make(chan fakeCall, 1)
	held := make(chan fakeCall, 1)
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		if binary.BigEndian.Uint32(c.args) == 1 {
			first <- c // not answered now
			return
		}
		// Answer the abandoned call first: the client must skip it.
		old := <-held
		fc.send(replyMsg(old.xid, old.args), 0)
		fc.send(replyMsg(c.xid, c.args), 0)
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	var got1 uint32
	go func() { errc <- c.Call(ctx, echoReq(1, &got1)) }()
	old := <-first
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	held <- old
	var got uint32
	if err := c.Call(t.Context(), echoReq(2, &got)); err != nil || got != 2 {
		t.Fatalf("second call: %v (got %d)", err, got)
	}
	if got1 != 0 {
		t.Errorf("abandoned call's Reply ran (got %d)", got1)
	}
}

func TestBadRepliesRejected(t *testing.T) {
	accepted := func(stat rpcv2.AcceptedReplyData) rpcv2.ReplyBody {
		return &rpcv2.ReplyBody_MSG_ACCEPTED{Areply: rpcv2.AcceptedReply{Verf: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, ReplyData: stat}}
	}
	tests := []struct {
		name string
		msg  func(xid uint32) []byte
		want error
	}{
		{"prog unavail", func(x uint32) []byte {
			return replyWith(x, accepted(&rpcv2.AcceptedReplyData_default{Stat: rpcv2.PROG_UNAVAIL}), nil)
		}, ErrProgUnavail},
		{"proc unavail", func(x uint32) []byte {
			return replyWith(x, accepted(&rpcv2.AcceptedReplyData_default{Stat: rpcv2.PROC_UNAVAIL}), nil)
		}, ErrProcUnavail},
		{"garbage args", func(x uint32) []byte {
			return replyWith(x, accepted(&rpcv2.AcceptedReplyData_default{Stat: rpcv2.GARBAGE_ARGS}), nil)
		}, ErrGarbageArgs},
		{"system err", func(x uint32) []byte {
			return replyWith(x, accepted(&rpcv2.AcceptedReplyData_default{Stat: rpcv2.SYSTEM_ERR}), nil)
		}, ErrSystemErr},
		{"prog mismatch", func(x uint32) []byte {
			d := &rpcv2.AcceptedReplyData_PROG_MISMATCH{}
			d.MismatchInfo.Low, d.MismatchInfo.High = 2, 2
			return replyWith(x, accepted(d), nil)
		}, ErrProgMismatch},
		{"rpc mismatch", func(x uint32) []byte {
			r := &rpcv2.RejectedReply_RPC_MISMATCH{}
			r.MismatchInfo.Low, r.MismatchInfo.High = 3, 4
			return replyWith(x, &rpcv2.ReplyBody_MSG_DENIED{Rreply: r}, nil)
		}, ErrRPCMismatch},
		{"auth error", func(x uint32) []byte {
			return replyWith(x, &rpcv2.ReplyBody_MSG_DENIED{Rreply: &rpcv2.RejectedReply_AUTH_ERROR{Stat: rpcv2.AUTH_TOOWEAK}}, nil)
		}, ErrAuth},
		{"unknown accept stat", func(x uint32) []byte {
			return replyWith(x, accepted(&rpcv2.AcceptedReplyData_default{Stat: 99}), nil)
		}, ErrGarbageReply},
		{"bad bool in results", func(x uint32) []byte { return replyMsg(x, u32(7)) }, ErrGarbageReply},
		{"results cut short", func(x uint32) []byte { return replyMsg(x, nil) }, ErrGarbageReply},
		{"bad reply stat", func(x uint32) []byte { return append(u32(x), append(u32(1), u32(9)...)...) }, ErrGarbageReply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
				if c.proc == 0 {
					fc.send(replyMsg(c.xid, nil), 0)
					return
				}
				fc.send(tc.msg(c.xid), 0)
			})
			c := newTestClient(t, srv.ln.Addr().String(), 1)
			err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 1, Reply: func(d *Decoder) error {
				d.Bool()
				return nil
			}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if IsRetryable(err) != errors.Is(tc.want, ErrSystemErr) {
				t.Errorf("IsRetryable(%v) = %v", err, IsRetryable(err))
			}
			// The connection survives a well-framed bad reply.
			if err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 0}); err != nil {
				t.Fatalf("call after bad reply: %v", err)
			}
		})
	}
}

func TestOversizedReplyRejected(t *testing.T) {
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {
		if c.proc == 0 {
			fc.send(replyMsg(c.xid, nil), 0)
			return
		}
		// A first fragment that claims 1 GiB after a valid header.
		hdr := replyMsg(c.xid, nil)
		fc.mu.Lock()
		_, _ = fc.nc.Write(append(u32(1<<30), hdr...))
		fc.mu.Unlock()
	})
	c := newTestClient(t, srv.ln.Addr().String(), 1)
	<-srv.accepted
	err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 1})
	if !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("got %v, want ErrReplyTooLarge", err)
	}
	<-srv.accepted // dropped and re-made
	if err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 0}); err != nil {
		t.Fatalf("call after reconnect: %v", err)
	}
}

func TestNoServerFailsFastRetryably(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	c := newTestClient(t, addr, 2)
	err = c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 0})
	if !errors.Is(err, ErrNoConnection) || !IsRetryable(err) {
		t.Fatalf("got %v, want retryable ErrNoConnection", err)
	}
	if c.Connected() {
		t.Error("Connected() with no server")
	}
}

func TestCloseFailsOutstandingCalls(t *testing.T) {
	got := make(chan struct{}, 1)
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) { got <- struct{}{} })
	cfg := DefaultConfig(srv.ln.Addr().String())
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Call(context.Background(), &Request{Prog: 1, Vers: 1, Proc: 1}) }()
	<-got
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("outstanding call: %v, want ErrClosed", err)
	}
	if err := c.Call(t.Context(), &Request{Prog: 1, Vers: 1, Proc: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	checkNoClientGoroutines(t)
}

func TestConfigValidateReportsAll(t *testing.T) {
	cfg := DefaultConfig("")
	cfg.Conns = 0
	cfg.BackoffMin = 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"addr", "conns", "backoff"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestSilentServerDeclaredDead(t *testing.T) {
	srv := newFakeServer(t, func(fc *fakeConn, c fakeCall) {}) // reads calls, never answers
	cfg := DefaultConfig(srv.ln.Addr().String())
	cfg.Conns = 1
	cfg.SilentTimeout = 20 * time.Millisecond
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 2*time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	<-srv.accepted
	// No deadline on the call: only the silence detector can end it.
	err = c.Call(context.Background(), &Request{Prog: 1, Vers: 1, Proc: 1})
	if !errors.Is(err, ErrConnLost) || !IsRetryable(err) {
		t.Fatalf("call to a silent server: %v, want retryable ErrConnLost", err)
	}
	<-srv.accepted // and the connection is re-made
}
