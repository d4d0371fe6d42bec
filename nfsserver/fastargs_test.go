package nfsserver

import (
	"bytes"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// The hand decoders must accept exactly what go-xdr's generated ones
// accept, with the same values: these fuzz tests compare them on any
// input. (Names are the exception on purpose: LOOKUP takes byte names, see
// names.go, so it is compared with readDirop.)

func FuzzParseCall(f *testing.F) {
	f.Add(callBytes(7, 2, progNFS, 3, procGetattr, authSys(1000, 100, 4, 5), fhArg(make([]byte, 32))))
	f.Add(callBytes(8, 2, progMount, 3, 1, rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, nil))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, off, isCall, err := parseCall(rec)
		var msg rpcv2.RpcMsg
		n, gerr := msg.ReadFrom(bytes.NewReader(rec))
		body, gCall := msg.Body.(*rpcv2.RpcMsgBody_CALL)
		switch {
		case err == nil && isCall:
			if gerr != nil || !gCall {
				t.Fatalf("parseCall took a call go-xdr refuses: %v", gerr)
			}
			cb := body.Cbody
			if h.xid != msg.Xid || h.rpcvers != cb.Rpcvers || h.prog != cb.Prog || h.vers != cb.Vers || h.proc != cb.Proc ||
				h.credFlavor != uint32(cb.Cred.Flavor) || !bytes.Equal(h.credBody, cb.Cred.Body) || int64(off) != n {
				t.Fatalf("parseCall %+v (args at %d), go-xdr %+v (%d bytes)", h, off, cb, n)
			}
		case gerr == nil && gCall:
			t.Fatalf("go-xdr took a call parseCall refuses (call %v): %v", isCall, err)
		}
	})
}

func FuzzParseAuthSys(f *testing.F) {
	f.Add(authSys(1000, 100, 4, 5).Body)
	f.Add(authSys(0, 0).Body)
	f.Fuzz(func(t *testing.T, body []byte) {
		cred, err := parseAuthSys(body)
		var p rpcv2.AuthsysParms
		n, gerr := p.ReadFrom(bytes.NewReader(body))
		// go-xdr reads the machine name as ASCII only; where it decodes,
		// the two must agree.
		if gerr == nil && int(n) == len(body) {
			if err != nil {
				t.Fatalf("parseAuthSys refused what go-xdr takes: %v", err)
			}
			if cred.UID != p.Uid || cred.GID != p.Gid || len(cred.GIDs) != len(p.Gids) {
				t.Fatalf("parseAuthSys %+v, go-xdr %+v", cred, p)
			}
			for i := range p.Gids {
				if cred.GIDs[i] != p.Gids[i] {
					t.Fatalf("gid %d: %d, go-xdr %d", i, cred.GIDs[i], p.Gids[i])
				}
			}
		}
	})
}

func FuzzFastArgs(f *testing.F) {
	fh := make([]byte, 32)
	f.Add(fhArg(fh))
	f.Add(append(fhArg(fh), 0, 0, 0, 0x1f))
	f.Add(enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: 1 << 40, Count: 1 << 20}))
	f.Add(dirop(fh, "name"))
	f.Add(dirop(fh, "café"))
	f.Fuzz(func(t *testing.T, b []byte) {
		same := func(proc string, ours, theirs error, eq bool) {
			t.Helper()
			switch {
			case (ours == nil) != (theirs == nil):
				t.Fatalf("%s: hand decoder %v, go-xdr %v", proc, ours, theirs)
			case ours == nil && !eq:
				t.Fatalf("%s: decoded values differ", proc)
			}
		}
		{
			a, err := decodeGetattr(b)
			var g nfsv3.Getattr3args
			_, gerr := g.ReadFrom(bytes.NewReader(b))
			same("GETATTR", err, gerr, bytes.Equal(a.Object.Data, g.Object.Data))
		}
		{
			a, err := decodeAccess(b)
			var g nfsv3.Access3args
			_, gerr := g.ReadFrom(bytes.NewReader(b))
			same("ACCESS", err, gerr, bytes.Equal(a.Object.Data, g.Object.Data) && a.Access == g.Access)
		}
		{
			a, err := decodeRead(b)
			var g nfsv3.Read3args
			_, gerr := g.ReadFrom(bytes.NewReader(b))
			same("READ", err, gerr, bytes.Equal(a.File.Data, g.File.Data) && a.Offset == g.Offset && a.Count == g.Count)
		}
		{
			a, err := decodeLookup(b)
			var g nfsv3.Diropargs3
			gerr := readDirop(bytes.NewReader(b), &g)
			same("LOOKUP", err, gerr, bytes.Equal(a.What.Dir.Data, g.Dir.Data) && a.What.Name == g.Name)
		}
	})
}
