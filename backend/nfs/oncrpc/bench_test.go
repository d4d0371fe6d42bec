package oncrpc

import (
	"testing"
)

// BenchmarkCallParallel measures the client's cost per call (allocations
// included) with many calls in flight against an in-process server.
func BenchmarkCallParallel(b *testing.B) {
	srv := newFakeServerB(b)
	cfg := DefaultConfig(srv.ln.Addr().String())
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	auth := &AuthSys{UID: 1000, GID: 1000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var got uint32
		req := &Request{Prog: 100003, Vers: 3, Proc: 1, Auth: auth,
			Args:  func(e *Encoder) { e.Uint32(7) },
			Reply: func(d *Decoder) error { got = d.Uint32(); return nil }}
		for pb.Next() {
			if err := c.Call(b.Context(), req); err != nil {
				b.Error(err)
				return
			}
		}
		_ = got
	})
}
