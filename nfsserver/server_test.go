package nfsserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/buildbarn/go-xdr/pkg/runtime"
	"github.com/nascache/nascache/cachefs"
)

func getattr(t *testing.T, c *testClient, fh []byte) nfsv3.Getattr3res {
	t.Helper()
	res, _, err := nfsv3.ReadGetattr3res(c.call(progNFS, 3, 1, fhArg(fh)))
	if err != nil {
		t.Fatalf("decode GETATTR: %v", err)
	}
	return res
}

func TestRejections(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	tests := []struct {
		name          string
		rpcvers, prog uint32
		vers, proc    uint32
		cred          rpcv2.OpaqueAuth
		check         func(rpcv2.ReplyBody) error
	}{
		{"rpc version 3", 3, progNFS, 3, 0, authSys(0, 0), func(b rpcv2.ReplyBody) error {
			d, ok := b.(*rpcv2.ReplyBody_MSG_DENIED)
			if !ok {
				return fmt.Errorf("not denied: %#v", b)
			}
			m, ok := d.Rreply.(*rpcv2.RejectedReply_RPC_MISMATCH)
			if !ok || m.MismatchInfo.Low != 2 || m.MismatchInfo.High != 2 {
				return fmt.Errorf("not RPC_MISMATCH 2..2: %#v", d.Rreply)
			}
			return nil
		}},
		{"unknown program", 2, 100099, 1, 0, authSys(0, 0), wantAccept(rpcv2.PROG_UNAVAIL)},
		{"portmap not on nfs port", 2, progPortmap, 2, 0, authSys(0, 0), wantAccept(rpcv2.PROG_UNAVAIL)},
		{"nfs v2", 2, progNFS, 2, 0, authSys(0, 0), wantMismatch(3, 3)},
		{"nfs v4", 2, progNFS, 4, 0, authSys(0, 0), wantMismatch(3, 3)},
		{"mount v1", 2, progMount, 1, 0, authSys(0, 0), wantMismatch(3, 3)},
		{"mount v2", 2, progMount, 2, 1, authSys(0, 0), wantMismatch(3, 3)},
		{"nfs proc 22", 2, progNFS, 3, 22, authSys(0, 0), wantAccept(rpcv2.PROC_UNAVAIL)},
		{"mount proc 6", 2, progMount, 3, 6, authSys(0, 0), wantAccept(rpcv2.PROC_UNAVAIL)},
		{"gss flavor", 2, progNFS, 3, 0, rpcv2.OpaqueAuth{Flavor: rpcv2.RPCSEC_GSS, Body: []byte{0, 0, 0, 1}}, wantAuth(rpcv2.AUTH_TOOWEAK)},
		{"garbled AUTH_SYS", 2, progNFS, 3, 0, rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: []byte{1, 2, 3}}, wantAuth(rpcv2.AUTH_BADCRED)},
		{"17 gids", 2, progNFS, 3, 0, rawAuthSys(17), wantAuth(rpcv2.AUTH_BADCRED)},
		{"AUTH_SYS trailing bytes", 2, progNFS, 3, 0, rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: append(authSys(1, 1).Body, 0, 0, 0, 0)}, wantAuth(rpcv2.AUTH_BADCRED)},
		{"AUTH_NONE null", 2, progNFS, 3, 0, rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, wantAccept(rpcv2.SUCCESS)},
		{"16 gids ok", 2, progNFS, 3, 0, authSys(1, 1, make([]uint32, 16)...), wantAccept(rpcv2.SUCCESS)},
		{"mount null", 2, progMount, 3, 0, authSys(0, 0), wantAccept(rpcv2.SUCCESS)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xid := uint32(1000 + i)
			c.write(record(callBytes(xid, tc.rpcvers, tc.prog, tc.vers, tc.proc, tc.cred, nil)))
			got, body, _ := c.recv()
			if got != xid {
				t.Fatalf("xid %d, want %d", got, xid)
			}
			if err := tc.check(body); err != nil {
				t.Error(err)
			}
		})
	}
}

// rawAuthSys encodes AUTH_SYS with n gids, past what go-xdr would encode.
func rawAuthSys(n int) rpcv2.OpaqueAuth {
	var b bytes.Buffer
	runtime.WriteUnsignedInt(&b, 1)
	runtime.WriteVariableLengthOpaque(&b, 255, []byte("host"))
	runtime.WriteUnsignedInt(&b, 1)
	runtime.WriteUnsignedInt(&b, 1)
	runtime.WriteUnsignedInt(&b, uint32(n))
	for range n {
		runtime.WriteUnsignedInt(&b, 1)
	}
	return rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: b.Bytes()}
}

func wantAccept(st rpcv2.AcceptStat) func(rpcv2.ReplyBody) error {
	return func(b rpcv2.ReplyBody) error {
		if got := acceptStat(b); got != st {
			return fmt.Errorf("accept stat %v, want %v", got, st)
		}
		return nil
	}
}

func wantMismatch(lo, hi uint32) func(rpcv2.ReplyBody) error {
	return func(b rpcv2.ReplyBody) error {
		a, ok := b.(*rpcv2.ReplyBody_MSG_ACCEPTED)
		if !ok {
			return fmt.Errorf("not accepted: %#v", b)
		}
		m, ok := a.Areply.ReplyData.(*rpcv2.AcceptedReplyData_PROG_MISMATCH)
		if !ok || m.MismatchInfo.Low != lo || m.MismatchInfo.High != hi {
			return fmt.Errorf("not PROG_MISMATCH %d..%d: %#v", lo, hi, a.Areply.ReplyData)
		}
		return nil
	}
}

func wantAuth(st rpcv2.AuthStat) func(rpcv2.ReplyBody) error {
	return func(b rpcv2.ReplyBody) error {
		d, ok := b.(*rpcv2.ReplyBody_MSG_DENIED)
		if !ok {
			return fmt.Errorf("not denied: %#v", b)
		}
		a, ok := d.Rreply.(*rpcv2.RejectedReply_AUTH_ERROR)
		if !ok || a.Stat != st {
			return fmt.Errorf("not AUTH_ERROR %v: %#v", st, d.Rreply)
		}
		return nil
	}
}

func TestGarbageArgsKeepsConnection(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	for _, tc := range []struct {
		name string
		proc uint32
		args []byte
	}{
		{"truncated GETATTR", 1, []byte{0, 0, 0, 32, 1, 2}},
		{"handle over 64 bytes", 1, fhArg(make([]byte, 65))},
		{"LOOKUP name with slash", procLookup, dirop(root, "a/b")},
		{"LOOKUP name with NUL", procLookup, dirop(root, "a\x00")},
		{"LOOKUP without name", procLookup, fhArg(root)},
		{"nonzero padding", 1, append([]byte{0, 0, 0, 1, 7, 1, 0, 0}, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := c.rawCall(progNFS, 3, tc.proc, tc.args)
			if st := acceptStat(body); st != rpcv2.GARBAGE_ARGS {
				t.Fatalf("accept stat %v, want GARBAGE_ARGS", st)
			}
			if res := getattr(t, c, root); res.GetStatus() != nfsv3.NFS3_OK {
				t.Fatalf("GETATTR after garbage: %v", res.GetStatus())
			}
		})
	}
}

func TestMultiFragmentRecord(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	msg := callBytes(77, 2, progNFS, 3, 1, c.cred, fhArg(root))
	var b []byte
	for i := 0; i < len(msg); i += 8 {
		end := min(i+8, len(msg))
		mark := uint32(end - i)
		if end == len(msg) {
			mark |= lastFragmentBit
		}
		b = binary.BigEndian.AppendUint32(b, mark)
		b = append(b, msg[i:end]...)
	}
	c.write(b)
	xid, body, r := c.recv()
	if xid != 77 || acceptStat(body) != rpcv2.SUCCESS {
		t.Fatalf("xid %d stat %v", xid, acceptStat(body))
	}
	res, _, err := nfsv3.ReadGetattr3res(r)
	if err != nil || res.GetStatus() != nfsv3.NFS3_OK {
		t.Fatalf("GETATTR: %v %v", res, err)
	}
}

func TestRecordTooLargeClosesConnection(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	c.write(binary.BigEndian.AppendUint32(nil, uint32(maxRecordBytes+1)|lastFragmentBit))
	if _, err := io.ReadAll(c.c); err != nil {
		t.Fatalf("read after oversized record: %v", err)
	}
	// io.ReadAll returned: the server closed the connection. Another
	// connection still works.
	c2 := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	if res := getattr(t, c2, root); res.GetStatus() != nfsv3.NFS3_OK {
		t.Fatal(res.GetStatus())
	}
}

// TestConcurrentRequestsOverlap proves two calls of one connection are in
// the FS at the same time: the fake blocks each until both have entered.
func TestConcurrentRequestsOverlap(t *testing.T) {
	s := startServer(t, nil)
	_, root := s.root(t, 1)
	gate := s.fs.add(root, "gate", cachefs.TypeRegular, 0o644)
	s.fs.mu.Lock()
	s.fs.gateIno, s.fs.entered, s.fs.release = gate.Ino, make(chan struct{}), make(chan struct{})
	s.fs.mu.Unlock()
	c := dial(t, s.srv.Addr())
	fh := s.codec.encode(gate)
	x1 := c.send(progNFS, 3, 1, fhArg(fh))
	x2 := c.send(progNFS, 3, 1, fhArg(fh))
	<-s.fs.entered
	<-s.fs.entered
	close(s.fs.release)
	seen := map[uint32]bool{}
	for range 2 {
		xid, body, r := c.recv()
		seen[xid] = true
		res, _, err := nfsv3.ReadGetattr3res(r)
		if acceptStat(body) != rpcv2.SUCCESS || err != nil || res.GetStatus() != nfsv3.NFS3_OK {
			t.Fatalf("xid %d: %v %v", xid, err, res)
		}
	}
	if !seen[x1] || !seen[x2] {
		t.Fatalf("replies %v, want xids %d and %d", seen, x1, x2)
	}
}

func TestHandleChecks(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	_, root := s.root(t, 1)
	f := s.fs.add(root, "f", cachefs.TypeRegular, 0o644)
	good := s.codec.encode(f)
	flip := func(i int) []byte {
		h := slices.Clone(good)
		h[i] ^= 1
		return h
	}
	gone := s.codec.encode(cachefs.NodeID{Export: 1, Ino: 9999, Gen: 1})
	oldGen := s.codec.encode(cachefs.NodeID{Export: 1, Ino: f.Ino, Gen: 2})
	otherExport := s.codec.encode(cachefs.NodeID{Export: 7, Ino: f.Ino, Gen: 1})
	otherKey, _ := newHandleCodec(bytes.Repeat([]byte{1}, 32))
	for _, tc := range []struct {
		name string
		fh   []byte
		want nfsv3.Nfsstat3
	}{
		{"good", good, nfsv3.NFS3_OK},
		{"empty", nil, nfsv3.NFS3ERR_BADHANDLE},
		{"short", good[:31], nfsv3.NFS3ERR_BADHANDLE},
		{"long", append(slices.Clone(good), 0), nfsv3.NFS3ERR_BADHANDLE},
		{"version", flip(0), nfsv3.NFS3ERR_BADHANDLE},
		{"reserved", flip(1), nfsv3.NFS3ERR_BADHANDLE},
		{"export edited", flip(3), nfsv3.NFS3ERR_BADHANDLE},
		{"inode edited", flip(11), nfsv3.NFS3ERR_BADHANDLE},
		{"gen edited", flip(15), nfsv3.NFS3ERR_BADHANDLE},
		{"mac edited", flip(31), nfsv3.NFS3ERR_BADHANDLE},
		{"other key", otherKey.encode(f), nfsv3.NFS3ERR_BADHANDLE},
		{"gone inode", gone, nfsv3.NFS3ERR_STALE},
		{"old generation", oldGen, nfsv3.NFS3ERR_STALE},
		{"unconfigured export", otherExport, nfsv3.NFS3ERR_STALE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := getattr(t, c, tc.fh).GetStatus(); got != tc.want {
				t.Fatalf("GETATTR: %s, want %s", statusName(got), statusName(tc.want))
			}
		})
	}
}

func TestMount(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Exports = append(c.Exports,
			Export{ID: 2, Path: "/other", Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.0/24")}})
	})
	c := dial(t, s.srv.Addr())
	st, fh := c.mnt("/data")
	if st != mount.MNT3_OK {
		t.Fatalf("MNT /data: %v", st)
	}
	if want, _ := s.root(t, 1); !bytes.Equal(fh, want) {
		t.Fatalf("MNT handle %x, want %x", fh, want)
	}
	if st, _ := c.mnt("/data/"); st != mount.MNT3_OK {
		t.Fatalf("MNT /data/: %v", st)
	}
	if st, _ := c.mnt("/nope"); st != mount.MNT3ERR_NOENT {
		t.Fatalf("MNT /nope: %v", st)
	}
	if st, _ := c.mnt("/other"); st != mount.MNT3ERR_ACCES {
		t.Fatalf("MNT /other from 127.0.0.1: %v", st)
	}
	// A handle of the refused export is refused too.
	other, _ := s.root(t, 2)
	if got := getattr(t, c, other).GetStatus(); got != nfsv3.NFS3ERR_STALE {
		t.Fatalf("GETATTR on refused export: %s", statusName(got))
	}

	dump := func() []string {
		var out []string
		for b, _, _ := mount.ReadMountlist(c.call(progMount, 3, 2, nil)); b != nil; b = b.MlNext {
			out = append(out, b.MlHostname+":"+b.MlDirectory)
		}
		return out
	}
	if got := dump(); !slices.Equal(got, []string{"127.0.0.1:/data"}) {
		t.Fatalf("DUMP %v", got)
	}
	var p bytes.Buffer
	runtime.WriteASCIIString(&p, 1024, "/data")
	c.call(progMount, 3, 3, p.Bytes())
	if got := dump(); len(got) != 0 {
		t.Fatalf("DUMP after UMNT %v", got)
	}
	c.mnt("/data")
	c.call(progMount, 3, 4, nil)
	if got := dump(); len(got) != 0 {
		t.Fatalf("DUMP after UMNTALL %v", got)
	}

	ex, _, err := mount.ReadExports(c.call(progMount, 3, 5, nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ; ex != nil; ex = ex.ExNext {
		var groups []string
		for g := ex.ExGroups; g != nil; g = g.GrNext {
			groups = append(groups, g.GrName)
		}
		got = append(got, ex.ExDir+" "+strings.Join(groups, ","))
	}
	if want := []string{"/data ", "/other 10.0.0.0/8,192.168.1.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("EXPORT %q, want %q", got, want)
	}
}

func TestReaddirplusPaging(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	rootFH, root := s.root(t, 1)
	const n = 2000
	want := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("file-%05d", i)
		s.fs.add(root, name, cachefs.TypeRegular, 0o644)
		want = append(want, name)
	}
	var got []string
	var cookie uint64
	var verf [8]byte
	pages := 0
	for {
		args := nfsv3.Readdirplus3args{Dir: nfsv3.NfsFh3{Data: rootFH}, Cookie: cookie, Cookieverf: verf, Dircount: 4096, Maxcount: 32768}
		raw := c.call(progNFS, 3, 17, enc(&args))
		size := raw.Len()
		res, _, err := nfsv3.ReadReaddirplus3res(raw)
		if err != nil {
			t.Fatal(err)
		}
		ok, isOK := res.(*nfsv3.Readdirplus3res_NFS3_OK)
		if !isOK {
			t.Fatalf("READDIRPLUS: %s", statusName(res.GetStatus()))
		}
		if size > int(args.Maxcount) {
			t.Fatalf("reply of %d bytes over maxcount %d", size, args.Maxcount)
		}
		pages++
		verf = ok.Resok.Cookieverf
		for e := ok.Resok.Reply.Entries; e != nil; e = e.Nextentry {
			got = append(got, e.Name)
			cookie = e.Cookie
			fh, isFH := e.NameHandle.(*nfsv3.PostOpFh3_TRUE)
			if !isFH {
				t.Fatalf("entry %s without handle", e.Name)
			}
			if _, err := s.codec.decode(fh.Handle.Data); err != nil {
				t.Fatalf("entry %s: %v", e.Name, err)
			}
			if a, isAttr := e.NameAttributes.(*nfsv3.PostOpAttr_TRUE); !isAttr || a.Attributes.Fileid != e.Fileid {
				t.Fatalf("entry %s attributes %#v", e.Name, e.NameAttributes)
			}
		}
		if ok.Resok.Reply.Eof {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d names, want %d in order", len(got), len(want))
	}
	if pages < 10 {
		t.Fatalf("%d pages: the byte budget was not applied", pages)
	}
	// A budget too small for one entry is TOOSMALL.
	args := nfsv3.Readdirplus3args{Dir: nfsv3.NfsFh3{Data: rootFH}, Dircount: 4096, Maxcount: 120}
	res, _, _ := nfsv3.ReadReaddirplus3res(c.call(progNFS, 3, 17, enc(&args)))
	if res.GetStatus() != nfsv3.NFS3ERR_TOOSMALL {
		t.Fatalf("tiny maxcount: %s", statusName(res.GetStatus()))
	}
}

func TestReaddirCount(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	rootFH, root := s.root(t, 1)
	for i := range 300 {
		s.fs.add(root, fmt.Sprintf("n%03d", i), cachefs.TypeRegular, 0o644)
	}
	var got int
	var cookie uint64
	var verf [8]byte
	for {
		args := nfsv3.Readdir3args{Dir: nfsv3.NfsFh3{Data: rootFH}, Cookie: cookie, Cookieverf: verf, Count: 1024}
		raw := c.call(progNFS, 3, 16, enc(&args))
		if raw.Len() > int(args.Count) {
			t.Fatalf("reply of %d bytes over count %d", raw.Len(), args.Count)
		}
		res, _, err := nfsv3.ReadReaddir3res(raw)
		if err != nil {
			t.Fatal(err)
		}
		ok, isOK := res.(*nfsv3.Readdir3res_NFS3_OK)
		if !isOK {
			t.Fatalf("READDIR: %s", statusName(res.GetStatus()))
		}
		verf = ok.Resok.Cookieverf
		if binary.BigEndian.Uint64(verf[:]) != fakeVerifier {
			t.Fatalf("cookie verifier %x not passed through", verf)
		}
		for e := ok.Resok.Reply.Entries; e != nil; e = e.Nextentry {
			got++
			cookie = e.Cookie
		}
		if ok.Resok.Reply.Eof {
			break
		}
	}
	if got != 300 {
		t.Fatalf("listed %d entries, want 300", got)
	}
}

func TestNonASCIINames(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	rootFH, _ := s.root(t, 1)
	const name = "caf\xc3\xa9-\xff"
	res, _, err := nfsv3.ReadCreate3res(c.call(progNFS, 3, procCreate, append(dirop(rootFH, name), enc(&nfsv3.Createhow3_GUARDED{ObjAttributes: emptySattr()})...)))
	if err != nil || res.GetStatus() != nfsv3.NFS3_OK {
		t.Fatalf("CREATE: %v %v", err, res)
	}
	lr, _, err := nfsv3.ReadLookup3res(c.call(progNFS, 3, procLookup, dirop(rootFH, name)))
	if err != nil || lr.GetStatus() != nfsv3.NFS3_OK {
		t.Fatalf("LOOKUP: %v %v", err, lr)
	}
	args := nfsv3.Readdir3args{Dir: nfsv3.NfsFh3{Data: rootFH}, Count: 4096}
	raw := c.call(progNFS, 3, 16, enc(&args))
	b, _ := io.ReadAll(raw)
	if !bytes.Contains(b, []byte(name)) {
		t.Fatalf("READDIR reply does not carry the name")
	}
	// SYMLINK and READLINK with a non-ASCII target.
	var sl bytes.Buffer
	sl.Write(dirop(rootFH, "link"))
	sa := emptySattr()
	sa.WriteTo(&sl)
	runtime.WriteVariableLengthOpaque(&sl, ^uint32(0), []byte(name))
	sr, _, err := nfsv3.ReadSymlink3res(c.call(progNFS, 3, procSymlink, sl.Bytes()))
	if err != nil || sr.GetStatus() != nfsv3.NFS3_OK {
		t.Fatalf("SYMLINK: %v %v", err, sr)
	}
	fh := sr.(*nfsv3.Symlink3res_NFS3_OK).Resok.Obj.(*nfsv3.PostOpFh3_TRUE).Handle.Data
	rl, _ := io.ReadAll(c.call(progNFS, 3, 5, fhArg(fh)))
	if !bytes.HasSuffix(rl, append(binary.BigEndian.AppendUint32(nil, uint32(len(name))), name+"\x00"...)) {
		t.Fatalf("READLINK reply %x", rl)
	}
}

func emptySattr() nfsv3.Sattr3 {
	return nfsv3.Sattr3{
		Mode:  &nfsv3.SetMode3_default{},
		Uid:   &nfsv3.SetUid3_default{},
		Gid:   &nfsv3.SetGid3_default{},
		Size:  &nfsv3.SetSize3_default{},
		Atime: &nfsv3.SetAtime_default{SetIt: nfsv3.DONT_CHANGE},
		Mtime: &nfsv3.SetMtime_default{SetIt: nfsv3.DONT_CHANGE},
	}
}
