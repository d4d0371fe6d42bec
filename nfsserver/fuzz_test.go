package nfsserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/rs/zerolog"
)

// newTestHandler is the main RPC handler with portmap enabled, over a
// fakeFS with export 1.
func newTestHandler(t testing.TB) *rpcHandler {
	fs := newFakeFS(1)
	codec, err := newHandleCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	exp := &Export{ID: 1, Path: "/data"}
	p, err := newNFSProgram(fs, codec, map[uint16]*Export{1: exp}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	m := &mountProgram{fs: fs, handles: codec, exports: []*Export{exp}, log: zerolog.Nop(), mounts: make(map[mountEntry]struct{})}
	return &rpcHandler{
		nfs:     nfsv3.NewNfsProgramService(p),
		mount:   mount.NewMountProgramService(m),
		nfsProg: p,
		portmap: &portmapper{port: 2049},
		pool:    &bufferPool{},
		log:     rpcLog{zerolog.Nop()},
	}
}

// FuzzRPCCall feeds a byte stream through the record reader and the call
// decoder. Every record must either be dropped or get a well-formed reply
// with the call's xid; nothing may panic. The seed corpus in
// testdata/fuzz/FuzzRPCCall runs as a normal test.
func FuzzRPCCall(f *testing.F) {
	f.Add(record(callBytes(1, 2, progNFS, 3, 0, authSys(0, 0), nil)))
	f.Add(record(callBytes(2, 2, progPortmap, 2, pmapProcGetport, rpcv2.OpaqueAuth{}, []byte{0, 1, 0x86, 0xa3, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0, 0})))
	h := newTestHandler(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		br := bufio.NewReader(bytes.NewReader(stream))
		for range 16 {
			rec, err := readRecord(br, h.pool, maxRecordBytes)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrRecordTooLarge) {
					t.Fatalf("readRecord: %v", err)
				}
				return
			}
			rp := h.handle(context.Background(), mustAddr("127.0.0.1"), rec.b)
			if rp == nil {
				h.pool.put(rec)
				continue
			}
			var msg rpcv2.RpcMsg
			if _, err := msg.ReadFrom(bytes.NewReader(rp.out[recordMarkBytes:])); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			if _, ok := msg.Body.(*rpcv2.RpcMsgBody_REPLY); !ok {
				t.Fatal("reply is not a REPLY")
			}
			if want := uint32(rec.b[0])<<24 | uint32(rec.b[1])<<16 | uint32(rec.b[2])<<8 | uint32(rec.b[3]); msg.Xid != want {
				t.Fatalf("reply xid %d, want %d", msg.Xid, want)
			}
			if rp.status == "" {
				t.Fatal("reply without a status label")
			}
			h.pool.put(rp.buf)
			h.pool.put(rec)
		}
	})
}
