package nfs

import (
	"bytes"
	"testing"

	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// FuzzDecodeResults runs the NFSv3 result decoders over arbitrary bytes:
// they must fail cleanly, never panic or allocate without bound.
func FuzzDecodeResults(f *testing.F) {
	var e oncrpc.Encoder
	e.Uint32(0)
	e.Bool(true)
	e.Opaque([]byte("handle"))
	e.Bool(true)
	(&fakeNAS{}).fattrLocked(&e)
	e.Bool(true)
	e.Uint64(1)
	e.Uint32(1)
	e.Uint32(2)
	e.Uint32(3)
	e.Uint32(4)
	e.Bool(false)
	f.Add(e.Bytes())
	f.Add([]byte{0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r newObjResult
		d := oncrpc.NewDecoder(bytes.NewReader(b))
		if r.decode(d) == nil && d.Err() == nil && r.hasH && len(r.h) > 64 {
			t.Fatalf("handle of %d bytes accepted", len(r.h))
		}
		d = oncrpc.NewDecoder(bytes.NewReader(b))
		decodeWcc(d)
		decodePostOpFH(d)
		d.String(maxNameBytes)
	})
}
