//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
)

// TestForgedHandleRejected speaks raw ONC RPC to nascache: MNT for the root
// handle of two exports, GETATTR with them (NFS3_OK), then GETATTR with the
// root handle altered in every byte, cut short, extended, zeroed: each must get
// NFS3ERR_BADHANDLE or NFS3ERR_STALE while the server keeps serving. Then
// nascache is restarted (same data_dir) with export /b limited to
// 10.99.0.0/16: the handle of /b's root, genuine and once valid, must now be
// refused to a client from 127.0.0.1, and MNT of /b too.
func TestForgedHandleRejected(t *testing.T) {
	a := localExport("/a", t.TempDir())
	b := localExport("/b", t.TempDir())
	p := startNascache(t, a, b)
	addr := p.cfg.Listen

	c, err := dialRPC(addr, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rootA := mustMount(t, c, "/a")
	rootB := mustMount(t, c, "/b")
	attrA := mustGetattr(t, c, rootA, "root of /a")
	attrB := mustGetattr(t, c, rootB, "root of /b")
	if attrA.Type != nfsv3.NF3DIR || attrB.Type != nfsv3.NF3DIR {
		t.Errorf("export roots are not directories: %v %v", attrA.Type, attrB.Type)
	}
	if attrA.Fsid == attrB.Fsid {
		t.Errorf("exports /a and /b report the same fsid %#x", attrA.Fsid)
	}
	t.Logf("root handle of /a (%d bytes): %x", len(rootA), rootA)

	for _, f := range forgeries(rootA) {
		st, _, err := c.getattr(f.handle)
		if err != nil {
			t.Fatalf("GETATTR with %s: %v (the server must answer with an NFS status)", f.what, err)
		}
		if st != nfsv3.NFS3ERR_BADHANDLE && st != nfsv3.NFS3ERR_STALE {
			t.Errorf("GETATTR with %s: status %d, want NFS3ERR_BADHANDLE (%d) or NFS3ERR_STALE (%d)",
				f.what, st, nfsv3.NFS3ERR_BADHANDLE, nfsv3.NFS3ERR_STALE)
		}
	}
	mustGetattr(t, c, rootA, "root of /a after the forgeries, same connection")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart with /b closed to our network; same data_dir, so same MAC key.
	p.stop()
	b.Clients = []string{"10.99.0.0/16"}
	p.setExports(a, b)
	p.start()
	c, err = dialRPC(addr, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustGetattr(t, c, rootA, "root of /a after a restart")
	if _, st, err := c.mnt("/b"); err == nil && st == mount.MNT3_OK {
		t.Errorf("MNT /b from 127.0.0.1 succeeded although /b allows only 10.99.0.0/16")
	} else {
		t.Logf("MNT /b refused: status %d, %v", st, err)
	}
	st, attr, err := c.getattr(rootB)
	var rpcErr *rpcError
	switch {
	case errors.As(err, &rpcErr):
		t.Logf("GETATTR with /b's handle refused at the RPC level: %v", err)
	case err != nil:
		t.Fatalf("GETATTR with /b's handle: %v", err)
	case st == nfsv3.NFS3_OK:
		t.Errorf("GETATTR with the root handle of /b (clients 10.99.0.0/16) from 127.0.0.1 returned NFS3_OK: %+v", attr)
	default:
		t.Logf("GETATTR with /b's handle refused: status %d", st)
	}
	mustGetattr(t, c, rootA, "root of /a after the refused call")
}

type forgery struct {
	what   string
	handle []byte
}

// forgeries derives altered handles from a genuine one: every byte flipped
// (low bit and all bits), cut short, extended, zeroed, and emptied.
func forgeries(fh []byte) []forgery {
	var out []forgery
	for i := range fh {
		for _, mask := range []byte{0x01, 0xff} {
			f := bytes.Clone(fh)
			f[i] ^= mask
			out = append(out, forgery{fmt.Sprintf("byte %d ^ %#02x", i, mask), f})
		}
	}
	out = append(out,
		forgery{"handle cut by one byte", bytes.Clone(fh[:len(fh)-1])},
		forgery{"handle of 4 bytes", bytes.Clone(fh[:4])},
		forgery{"handle extended by a zero byte", append(bytes.Clone(fh), 0)},
		forgery{"all-zero handle", make([]byte, len(fh))},
		forgery{"empty handle", []byte{}},
		forgery{"64-byte handle", append(bytes.Clone(fh), make([]byte, 64-len(fh))...)},
	)
	return out
}

func mustMount(t *testing.T, c *rpcClient, path string) []byte {
	t.Helper()
	fh, st, err := c.mnt(path)
	if err != nil {
		t.Fatalf("MNT %s: %v", path, err)
	}
	if st != mount.MNT3_OK {
		t.Fatalf("MNT %s: status %d", path, st)
	}
	return fh
}

func mustGetattr(t *testing.T, c *rpcClient, fh []byte, what string) *nfsv3.Fattr3 {
	t.Helper()
	st, attr, err := c.getattr(fh)
	if err != nil {
		t.Fatalf("GETATTR %s: %v", what, err)
	}
	if st != nfsv3.NFS3_OK {
		t.Fatalf("GETATTR %s: status %d, want NFS3_OK", what, st)
	}
	return attr
}
