package nfsserver

import (
	"bytes"
	"context"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/nascache/nascache/cachefs"
)

// BenchmarkReadReply measures building a 1 MiB READ reply with buffers
// returned to the pool (as the server does) and without (every reply
// allocates). The data itself is not copied (it becomes the reply's
// tail, see read.go), so what is pooled is the head; the fake FS clones
// the data, which dominates. This was the measurement behind bufferPool.
func BenchmarkReadReply(b *testing.B) {
	for _, pooled := range []bool{true, false} {
		name := "unpooled"
		if pooled {
			name = "pooled"
		}
		b.Run(name, func(b *testing.B) {
			h := newTestHandler(b)
			fs := h.nfsProg.fs.(*fakeFS)
			root, _, _ := fs.Root(context.Background(), 1)
			f := fs.add(root, "big", cachefs.TypeRegular, 0o644)
			fs.mu.Lock()
			fs.nodes[f.Ino].data = bytes.Repeat([]byte{7}, maxIOBytes)
			fs.mu.Unlock()
			args := nfsv3.Read3args{File: nfsv3.NfsFh3{Data: h.nfsProg.handles.encode(f)}, Count: maxIOBytes}
			call := callBytes(1, 2, progNFS, 3, 6, authSys(0, 0), enc(&args))
			peer := mustAddr("127.0.0.1")
			b.SetBytes(maxIOBytes)
			b.ReportAllocs()
			for b.Loop() {
				rp := h.handle(context.Background(), peer, call)
				if len(rp.out)+len(rp.tail) < maxIOBytes {
					b.Fatalf("reply of %d+%d bytes", len(rp.out), len(rp.tail))
				}
				if pooled {
					h.pool.put(rp.buf)
				}
			}
		})
	}
}

// BenchmarkGetattrCall is one GETATTR call through the RPC layer (decode,
// handle check, encode) over the fake FS.
func BenchmarkGetattrCall(b *testing.B) {
	h := newTestHandler(b)
	fs := h.nfsProg.fs.(*fakeFS)
	root, _, _ := fs.Root(context.Background(), 1)
	call := callBytes(1, 2, progNFS, 3, 1, authSys(1000, 1000, 4, 5), fhArg(h.nfsProg.handles.encode(root)))
	peer := mustAddr("127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		rp := h.handle(context.Background(), peer, call)
		h.pool.put(rp.buf)
	}
}
