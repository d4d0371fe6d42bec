package oncrpc

import (
	"bytes"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// FuzzReadReply feeds arbitrary bytes to the reader's path: record marking,
// the reply header and a results decoder. It must never panic, and a
// record it accepts must not be read past its end.
func FuzzReadReply(f *testing.F) {
	rec := func(msg []byte) []byte { return append(u32(lastFragment|uint32(len(msg))), msg...) }
	var res Encoder
	res.Uint32(7)
	res.Opaque([]byte("data"))
	f.Add(rec(replyMsg(1, res.buf)))
	f.Add(rec(replyWith(2, &rpcv2.ReplyBody_MSG_DENIED{Rreply: &rpcv2.RejectedReply_AUTH_ERROR{Stat: rpcv2.AUTH_BADCRED}}, nil)))
	f.Add(append(u32(3), replyMsg(3, res.buf)...))
	f.Add([]byte{0x80, 0, 0, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := &recordReader{br: newReadBuffer(bytes.NewReader(b), nil, 4096), maxBytes: 1 << 16}
		if rr.begin() != nil {
			return
		}
		d := NewDecoder(rr)
		d.Uint32()
		d.Uint32()
		buf := make([]byte, 64)
		_ = decodeReply(d, &Request{Reply: func(d *Decoder) error {
			d.Uint32()
			d.OpaqueInto(buf)
			d.String(100)
			return nil
		}})
		_ = rr.drain()
	})
}
