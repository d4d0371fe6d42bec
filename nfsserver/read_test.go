package nfsserver

import (
	"bytes"
	"sync"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/nascache/nascache/cachefs"
)

// TestReadReplyTail checks READ replies sent as head + data + padding
// (writev): every length modulo 4, empty and 1 MiB, many calls in flight
// on one connection. Each reply must be one well-formed record that
// decodes to exactly the file's bytes with nothing left over, so a wrong
// record length or missing padding breaks the framing of the next reply.
func TestReadReplyTail(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	_, root := s.root(t, 1)
	f := s.fs.add(root, "f", cachefs.TypeRegular, 0o644)
	data := make([]byte, maxIOBytes+8)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	s.fs.mu.Lock()
	s.fs.nodes[f.Ino].data = data
	s.fs.mu.Unlock()
	fh := s.codec.encode(f)

	cases := []struct {
		name  string
		off   uint64
		count uint32
		eof   bool
	}{
		{"empty", 0, 0, false},
		{"1 byte", 3, 1, false},
		{"2 bytes", 3, 2, false},
		{"3 bytes", 3, 3, false},
		{"4 bytes", 3, 4, false},
		{"5 bytes", 3, 5, false},
		{"1 MiB", 0, maxIOBytes, false},
		{"short at the end", maxIOBytes + 1, maxIOBytes, true},
		{"past the end", maxIOBytes + 100, 10, true},
	}
	// Send every call before reading any reply, so that replies are
	// written back to back and may complete in any order.
	xids := make(map[uint32]int, len(cases))
	for i, tc := range cases {
		xids[c.send(progNFS, 3, procRead, enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: tc.off, Count: tc.count}))] = i
	}
	for range cases {
		xid, body, r := c.recv()
		i, ok := xids[xid]
		if !ok {
			t.Fatalf("reply to unknown xid %d", xid)
		}
		delete(xids, xid)
		tc := cases[i]
		if st := acceptStat(body); st != 0 {
			t.Fatalf("%s: accept stat %v", tc.name, st)
		}
		res, _, err := nfsv3.ReadRead3res(r)
		if err != nil {
			t.Fatalf("%s: decode: %v", tc.name, err)
		}
		okRes, isOK := res.(*nfsv3.Read3res_NFS3_OK)
		if !isOK {
			t.Fatalf("%s: %s", tc.name, statusName(res.GetStatus()))
		}
		end := min(tc.off+uint64(tc.count), uint64(len(data)))
		want := data[min(tc.off, end):end]
		if !bytes.Equal(okRes.Resok.Data, want) || okRes.Resok.Count != uint32(len(want)) {
			t.Errorf("%s: %d bytes (count %d), want %d", tc.name, len(okRes.Resok.Data), okRes.Resok.Count, len(want))
		}
		if okRes.Resok.Eof != tc.eof {
			t.Errorf("%s: eof %v, want %v", tc.name, okRes.Resok.Eof, tc.eof)
		}
		if r.Len() != 0 {
			t.Errorf("%s: %d bytes after the result", tc.name, r.Len())
		}
	}
}

// TestReadReleaseAfterWrite checks that a READ's buffer is handed back
// (cachefs.ReadResult.Release) exactly once per reply and only after the
// reply went out: the fake poisons the buffer on release, so an early
// release would deliver poisoned bytes.
func TestReadReleaseAfterWrite(t *testing.T) {
	s := startServer(t, nil)
	const calls = 16
	s.fs.released = make(chan struct{}, calls)
	c := dial(t, s.srv.Addr())
	_, root := s.root(t, 1)
	f := s.fs.add(root, "f", cachefs.TypeRegular, 0o644)
	data := bytes.Repeat([]byte{0x5a}, 256<<10)
	s.fs.mu.Lock()
	s.fs.nodes[f.Ino].data = data
	s.fs.mu.Unlock()
	fh := s.codec.encode(f)
	for i := range calls {
		c.send(progNFS, 3, procRead, enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: uint64(i) * 1024, Count: 64 << 10}))
	}
	for range calls {
		_, body, r := c.recv()
		if st := acceptStat(body); st != 0 {
			t.Fatalf("accept stat %v", st)
		}
		res, _, err := nfsv3.ReadRead3res(r)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		ok, isOK := res.(*nfsv3.Read3res_NFS3_OK)
		if !isOK || !bytes.Equal(ok.Resok.Data, data[:64<<10]) {
			t.Fatalf("READ reply data wrong (released before it was sent?)")
		}
	}
	for i := range calls {
		select {
		case <-s.fs.released:
		case <-t.Context().Done():
			t.Fatalf("%d of %d buffers released", i, calls)
		}
	}
	select {
	case <-s.fs.released:
		t.Fatalf("more releases than READs")
	default:
	}
}

// TestReadOKEncoding checks that readOK's head followed by its tail and
// padding is byte for byte what the generated encoder writes.
func TestReadOKEncoding(t *testing.T) {
	attr := postOpAttr(&cachefs.Attr{Type: cachefs.TypeRegular, Mode: 0o644, SizeBytes: 7})
	for _, n := range []int{0, 1, 2, 3, 4, 5, 4096} {
		res := nfsv3.Read3res_NFS3_OK{Resok: nfsv3.Read3resok{
			FileAttributes: attr, Count: uint32(n), Eof: n%2 == 0, Data: bytes.Repeat([]byte{0xa5}, n),
		}}
		want := enc(&res)
		m := &readOK{Read3res_NFS3_OK: res}
		head := enc(m)
		if len(head) != m.GetEncodedSizeBytes() {
			t.Errorf("%d bytes: head of %d bytes, GetEncodedSizeBytes %d", n, len(head), m.GetEncodedSizeBytes())
		}
		got := append(append(head, m.tail()...), make([]byte, padBytes(n))...)
		if !bytes.Equal(got, want) {
			t.Errorf("%d bytes: head+tail+pad differs from the generated encoding", n)
		}
	}
}

// TestPipelinedReplies floods one connection with READs of odd sizes sent
// while replies stream back, so that the connection's workers finish in
// any order and replies are coalesced into shared writevs: every call must
// get exactly one well-formed reply with its own bytes.
func TestPipelinedReplies(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	_, root := s.root(t, 1)
	f := s.fs.add(root, "f", cachefs.TypeRegular, 0o644)
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*13 + i>>10)
	}
	s.fs.mu.Lock()
	s.fs.nodes[f.Ino].data = data
	s.fs.mu.Unlock()
	fh := s.codec.encode(f)
	const calls = 400
	type want struct{ off, count uint64 }
	var mu sync.Mutex // guards wants (the sender adds, the test takes)
	wants := make(map[uint32]want, calls)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range calls {
			off := uint64(i*7919) % uint64(len(data))
			count := uint64(1 + (i*104729)%(20<<10))
			if i%10 == 0 {
				count = maxIOBytes
			}
			args := enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: off, Count: uint32(count)})
			mu.Lock()
			c.xid++
			xid := c.xid
			wants[xid] = want{off, count}
			mu.Unlock()
			if _, err := c.c.Write(record(callBytes(xid, 2, progNFS, 3, procRead, c.cred, args))); err != nil {
				t.Errorf("send: %v", err)
				return
			}
		}
	}()
	for range calls {
		xid, body, r := c.recv()
		mu.Lock()
		w, ok := wants[xid]
		delete(wants, xid)
		mu.Unlock()
		if !ok {
			t.Fatalf("reply to unknown or already answered xid %d", xid)
		}
		if st := acceptStat(body); st != 0 {
			t.Fatalf("xid %d: accept stat %v", xid, st)
		}
		res, _, err := nfsv3.ReadRead3res(r)
		if err != nil {
			t.Fatalf("xid %d: decode: %v", xid, err)
		}
		okRes, isOK := res.(*nfsv3.Read3res_NFS3_OK)
		if !isOK {
			t.Fatalf("xid %d: %s", xid, statusName(res.GetStatus()))
		}
		end := min(w.off+w.count, uint64(len(data)))
		if !bytes.Equal(okRes.Resok.Data, data[w.off:end]) {
			t.Fatalf("xid %d: %d bytes at %d, not the file's", xid, len(okRes.Resok.Data), w.off)
		}
	}
	<-sent
}
