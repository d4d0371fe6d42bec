package nfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// fakeNAS is an in-process NFSv3 + MOUNT server with one regular file,
// enough to test what the Origin adds on top of the RPC client: READ and
// WRITE splitting, short writes, JUKEBOX retries and the re-sending of
// unstable data after a server reboot (a changed write verifier).
type fakeNAS struct {
	ln net.Listener
	wg sync.WaitGroup

	mu          sync.Mutex // guards everything below
	conns       []net.Conn
	data        []byte // what reads see
	durable     []byte // what survives a reboot
	pending     []pendingWrite
	verf        [8]byte
	jukeboxLeft int // GETATTRs still to answer NFS3ERR_JUKEBOX
	maxWrite    int // a WRITE stores at most this much (short writes)
	syncWrites  int // FILE_SYNC WRITEs seen
	calls       map[uint32]int
	drop        map[uint32]int  // per procedure: calls still to answer by dropping the connection
	stall       map[uint32]bool // per procedure: calls never answered (a hung server)
}

type pendingWrite struct {
	off  int
	data []byte
}

const fakeIOMax = 4096

func newFakeNAS(t *testing.T) *fakeNAS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newFakeNASOn(t, ln)
}

// newFakeNASOn serves on ln (a server that comes up on a known port).
func newFakeNASOn(t *testing.T, ln net.Listener) *fakeNAS {
	t.Helper()
	s := &fakeNAS{ln: ln, maxWrite: 1 << 30, calls: map[uint32]int{}, drop: map[uint32]int{}, stall: map[uint32]bool{}}
	s.verf[0] = 1
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(t, nc) }()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and every connection (a server gone away) and
// waits for the server's goroutines. It may be called more than once.
func (s *fakeNAS) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeNAS) url() string {
	port := s.ln.Addr().(*net.TCPAddr).Port
	return "nfs://127.0.0.1:" + strconv.Itoa(port) + "/export?mountport=" + strconv.Itoa(port)
}

// reboot loses unstable data and changes the write verifier.
func (s *fakeNAS) reboot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = append([]byte(nil), s.durable...)
	s.pending = nil
	s.verf[0]++
}

type req struct{ b []byte }

func (r *req) u32() uint32 { v := binary.BigEndian.Uint32(r.b); r.b = r.b[4:]; return v }
func (r *req) u64() uint64 { v := binary.BigEndian.Uint64(r.b); r.b = r.b[8:]; return v }
func (r *req) opaque() []byte {
	n := int(r.u32())
	v := r.b[:n]
	r.b = r.b[(n+3)&^3:]
	return v
}

func (s *fakeNAS) serve(t *testing.T, nc net.Conn) {
	for {
		var rec []byte
		for {
			var h [4]byte
			if _, err := io.ReadFull(nc, h[:]); err != nil {
				return
			}
			v := binary.BigEndian.Uint32(h[:])
			frag := make([]byte, v&0x7fffffff)
			if _, err := io.ReadFull(nc, frag); err != nil {
				return
			}
			rec = append(rec, frag...)
			if v&0x80000000 != 0 {
				break
			}
		}
		r := &req{b: rec}
		xid := r.u32()
		r.u32() // CALL
		r.u32() // rpcvers
		prog, _, proc := r.u32(), r.u32(), r.u32()
		r.u32()
		r.opaque() // cred
		r.u32()
		r.opaque() // verf
		var e oncrpc.Encoder
		e.Uint32(0) // record mark
		e.Uint32(xid)
		e.Uint32(1) // REPLY
		e.Uint32(0) // MSG_ACCEPTED
		e.Uint32(0) // verf AUTH_NONE
		e.Uint32(0)
		e.Uint32(0) // SUCCESS
		s.mu.Lock()
		s.calls[proc]++
		if prog == nfsv3.NFS_PROGRAM_PROGRAM_NUMBER && s.drop[proc] > 0 {
			s.drop[proc]--
			s.mu.Unlock()
			_ = nc.Close() // the call was received; its reply never comes
			return
		}
		if prog == nfsv3.NFS_PROGRAM_PROGRAM_NUMBER && s.stall[proc] {
			s.mu.Unlock()
			continue
		}
		if prog == pmapProg {
			if proc == pmapProcGetport {
				// Both programs live on this one port.
				e.Uint32(uint32(s.ln.Addr().(*net.TCPAddr).Port))
			}
		} else if prog == mount.MOUNT_PROGRAM_PROGRAM_NUMBER {
			if proc == mountProcMnt {
				e.Uint32(0)
				e.Opaque([]byte("ROOT"))
				e.Uint32(1)
				e.Uint32(1)
			}
		} else {
			s.nfsLocked(t, proc, r, &e)
		}
		s.mu.Unlock()
		out := e.Bytes()
		binary.BigEndian.PutUint32(out, 0x80000000|uint32(len(out)-4))
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

func (s *fakeNAS) fattrLocked(e *oncrpc.Encoder) {
	e.Uint32(uint32(nfsv3.NF3REG))
	e.Uint32(0o644)
	e.Uint32(1)
	e.Uint32(0)
	e.Uint32(0)
	e.Uint64(uint64(len(s.data)))
	e.Uint64(uint64(len(s.data)))
	e.Uint32(0)
	e.Uint32(0)
	e.Uint64(1)  // fsid
	e.Uint64(42) // fileid
	for range 3 {
		e.Uint32(1700000000)
		e.Uint32(0)
	}
}

func apply(dst []byte, off int, p []byte) []byte {
	if end := off + len(p); end > len(dst) {
		dst = append(dst, make([]byte, end-len(dst))...)
	}
	copy(dst[off:], p)
	return dst
}

func (s *fakeNAS) nfsLocked(t *testing.T, proc uint32, r *req, e *oncrpc.Encoder) {
	switch proc {
	case procFsinfo:
		e.Uint32(0)
		e.Bool(false)
		for range 7 {
			e.Uint32(fakeIOMax)
		}
		e.Uint64(1 << 40)
		e.Uint32(0)
		e.Uint32(1)
		e.Uint32(0)
	case procGetattr:
		if s.jukeboxLeft > 0 {
			s.jukeboxLeft--
			e.Int32(int32(nfsv3.NFS3ERR_JUKEBOX))
			return
		}
		e.Uint32(0)
		s.fattrLocked(e)
	case procRead:
		r.opaque()
		off, n := int(r.u64()), int(r.u32())
		if n > fakeIOMax {
			t.Errorf("READ of %d bytes exceeds rtmax", n)
		}
		lo, hi := min(off, len(s.data)), min(off+n, len(s.data))
		e.Uint32(0)
		e.Bool(false)
		e.Uint32(uint32(hi - lo))
		e.Bool(hi == len(s.data))
		e.Opaque(s.data[lo:hi])
	case procWrite:
		r.opaque()
		off := int(r.u64())
		r.u32()
		stable := r.u32()
		p := r.opaque()
		if len(p) > fakeIOMax {
			t.Errorf("WRITE of %d bytes exceeds wtmax", len(p))
		}
		p = p[:min(len(p), s.maxWrite)]
		s.data = apply(s.data, off, p)
		if stable == 0 {
			s.pending = append(s.pending, pendingWrite{off, append([]byte(nil), p...)})
		} else {
			s.syncWrites++
			s.durable = apply(s.durable, off, p)
			stable = 2
		}
		e.Uint32(0)
		e.Bool(false) // wcc: no pre
		e.Bool(true)
		s.fattrLocked(e)
		e.Uint32(uint32(len(p)))
		e.Uint32(stable)
		e.Fixed(s.verf[:])
	case procCommit:
		for _, w := range s.pending {
			s.durable = apply(s.durable, w.off, w.data)
		}
		s.pending = nil
		e.Uint32(0)
		e.Bool(false)
		e.Bool(false)
		e.Fixed(s.verf[:])
	default:
		e.Int32(int32(nfsv3.NFS3ERR_NOTSUPP))
	}
}

// TestMain fails the package if a goroutine of an RPC client outlives the
// tests: every Origin is closed by its test, and Close waits for its
// goroutines, so none may be left (no polling needed).
func TestMain(m *testing.M) {
	code := m.Run()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "oncrpc.(*Client).run") || strings.Contains(g, "oncrpc.(*conn).readLoop") {
			fmt.Fprintf(os.Stderr, "goroutine left after the tests:\n%s\n", g)
			code = 1
		}
	}
	os.Exit(code)
}

func newFakeOrigin(t *testing.T, s *fakeNAS, opts Options) *Origin {
	t.Helper()
	o, err := New(t.Context(), s.url(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/251)
	}
	return p
}

func TestUnstableDataResentAfterVerifierChange(t *testing.T) {
	for _, reboot := range []bool{false, true} {
		t.Run("reboot="+strconv.FormatBool(reboot), func(t *testing.T) {
			s := newFakeNAS(t)
			s.mu.Lock()
			s.maxWrite = 1000 // every WRITE is short
			s.mu.Unlock()
			o := newFakeOrigin(t, s, Options{})
			ctx := t.Context()
			fh := []byte("FILE")
			data := pattern(3*fakeIOMax + 17)
			st, a, err := o.Write(ctx, rootCredForTest, fh, data, 5, 0)
			if err != nil {
				t.Fatal(err)
			}
			if st != 0 || a.SizeBytes != uint64(len(data)+5) {
				t.Errorf("stability %d size %d", st, a.SizeBytes)
			}
			if reboot {
				s.reboot()
			}
			if _, err := o.Commit(ctx, rootCredForTest, fh); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if want := append(make([]byte, 5), data...); !bytes.Equal(s.durable, want) {
				t.Fatalf("durable data differs (%d bytes, want %d)", len(s.durable), len(want))
			}
			if resent := s.syncWrites > 0; resent != reboot {
				t.Errorf("FILE_SYNC writes %d with reboot=%v", s.syncWrites, reboot)
			}
			if o.unstable.bytes != 0 || len(o.unstable.files) != 0 {
				t.Errorf("unstable data left: %d bytes, %d files", o.unstable.bytes, len(o.unstable.files))
			}
		})
	}
}

func TestUnstableLimitFallsBackToFileSync(t *testing.T) {
	s := newFakeNAS(t)
	o := newFakeOrigin(t, s, Options{UnstableLimitBytes: 100})
	st, _, err := o.Write(t.Context(), rootCredForTest, []byte("FILE"), pattern(101), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st != 2 {
		t.Errorf("write over the unstable limit reached stability %d, want FILE_SYNC", st)
	}
}

func TestReadSplitAcrossRtmax(t *testing.T) {
	s := newFakeNAS(t)
	s.mu.Lock()
	s.data = pattern(10000)
	s.mu.Unlock()
	o := newFakeOrigin(t, s, Options{})
	buf := make([]byte, 3*fakeIOMax+5)
	n, eof, err := o.Read(t.Context(), rootCredForTest, []byte("FILE"), buf, 3)
	if err != nil {
		t.Fatal(err)
	}
	if n != 9997 || !eof || !bytes.Equal(buf[:n], s.data[3:]) {
		t.Fatalf("n %d eof %v equal %v", n, eof, bytes.Equal(buf[:n], s.data[3:]))
	}
	n, eof, err = o.Read(t.Context(), rootCredForTest, []byte("FILE"), buf[:100], 50)
	if err != nil || n != 100 || eof || !bytes.Equal(buf[:n], s.data[50:150]) {
		t.Fatalf("small read: n %d eof %v err %v", n, eof, err)
	}
}

func TestJukeboxRetriedThenUnavailable(t *testing.T) {
	s := newFakeNAS(t)
	o := newFakeOrigin(t, s, Options{RetryBackoffMin: 1, RetryBackoffMax: 2, RetryFor: 1 << 62})
	s.mu.Lock()
	s.jukeboxLeft = 3
	s.mu.Unlock()
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); err != nil {
		t.Fatalf("GetAttr after 3 JUKEBOX replies: %v", err)
	}

	o2 := newFakeOrigin(t, s, Options{RetryBackoffMin: 1, RetryBackoffMax: 2, RetryFor: 1})
	s.mu.Lock()
	s.jukeboxLeft = 1 << 30
	s.mu.Unlock()
	_, err := o2.GetAttr(t.Context(), rootCredForTest, []byte("FILE"))
	var se *StatusError
	if !errors.As(err, &se) || se.Status != nfsv3.NFS3ERR_JUKEBOX || !isRetryable(err) {
		t.Fatalf("GetAttr under endless JUKEBOX: %v", err)
	}
}

var rootCredForTest = backend.Cred{}

func isRetryable(err error) bool { return backend.IsRetryable(err) }

func TestLostConnectionRetriedOnlyWhenIdempotent(t *testing.T) {
	s := newFakeNAS(t)
	s.mu.Lock()
	s.data = pattern(5000)
	s.mu.Unlock()
	o := newFakeOrigin(t, s, Options{RetryBackoffMin: 1, RetryBackoffMax: 2})
	s.mu.Lock()
	s.drop[procRead] = 1
	s.drop[procRemove] = 1
	s.mu.Unlock()
	buf := make([]byte, 100)
	n, _, err := o.Read(t.Context(), rootCredForTest, []byte("FILE"), buf, 10)
	if err != nil || n != 100 || !bytes.Equal(buf, s.data[10:110]) {
		t.Fatalf("READ across a dropped connection: n %d err %v", n, err)
	}
	// REMOVE is not idempotent: a retry could report NOENT for a remove
	// that worked, so the caller gets the retryable error instead.
	err = o.Remove(t.Context(), rootCredForTest, []byte("ROOT"), "x")
	if !errors.Is(err, oncrpc.ErrConnLost) || !backend.IsRetryable(err) {
		t.Fatalf("REMOVE across a dropped connection: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls[procRead] != 2 || s.calls[procRemove] != 1 {
		t.Errorf("READ sent %d times (want 2), REMOVE %d (want 1)", s.calls[procRead], s.calls[procRemove])
	}
}

func TestPortmapperLookup(t *testing.T) {
	s := newFakeNAS(t)
	port := s.ln.Addr().(*net.TCPAddr).Port
	// No NFS or MOUNT port: both are asked of the "portmapper".
	o, err := New(t.Context(), "nfs://127.0.0.1/export?portmapport="+strconv.Itoa(port), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	}()
	if tg := o.Target(); tg.Port != port || tg.MountPort != port {
		t.Errorf("resolved ports %d/%d, want %d", tg.Port, tg.MountPort, port)
	}
	if _, err := o.GetAttr(t.Context(), rootCredForTest, []byte("FILE")); err != nil {
		t.Fatal(err)
	}
}
