package nfsserver

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/buildbarn/go-xdr/pkg/runtime"
	"github.com/nascache/nascache/cachefs"
)

func createArgs(dir []byte, name string, how nfsv3.Createhow3) []byte {
	return append(dirop(dir, name), enc(how)...)
}

func createdHandle(t *testing.T, r *bytes.Reader) []byte {
	t.Helper()
	res, _, err := nfsv3.ReadCreate3res(r)
	if err != nil {
		t.Fatal(err)
	}
	ok, isOK := res.(*nfsv3.Create3res_NFS3_OK)
	if !isOK {
		t.Fatalf("CREATE: %s", statusName(res.GetStatus()))
	}
	return ok.Resok.Obj.(*nfsv3.PostOpFh3_TRUE).Handle.Data
}

func TestReadWriteCommit(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	fh := createdHandle(t, c.call(progNFS, 3, procCreate, createArgs(root, "f", &nfsv3.Createhow3_UNCHECKED{ObjAttributes: emptySattr()})))

	data := bytes.Repeat([]byte("0123456789abcdef"), maxIOBytes/16)
	var verf [8]byte
	for _, stable := range []nfsv3.StableHow{nfsv3.UNSTABLE, nfsv3.DATA_SYNC, nfsv3.FILE_SYNC} {
		args := nfsv3.Write3args{File: nfsv3.NfsFh3{Data: fh}, Count: uint32(len(data)), Stable: stable, Data: data}
		res, _, err := nfsv3.ReadWrite3res(c.call(progNFS, 3, 7, enc(&args)))
		if err != nil {
			t.Fatal(err)
		}
		ok, isOK := res.(*nfsv3.Write3res_NFS3_OK)
		if !isOK {
			t.Fatalf("WRITE %v: %s", stable, statusName(res.GetStatus()))
		}
		if ok.Resok.Count != uint32(len(data)) || ok.Resok.Committed != stable {
			t.Fatalf("WRITE %v: count %d committed %v", stable, ok.Resok.Count, ok.Resok.Committed)
		}
		if _, isPre := ok.Resok.FileWcc.Before.(*nfsv3.PreOpAttr_TRUE); !isPre {
			t.Fatalf("WRITE without pre-op attributes")
		}
		if verf != [8]byte{} && verf != ok.Resok.Verf {
			t.Fatalf("write verifier changed")
		}
		verf = ok.Resok.Verf
	}
	cr, _, _ := nfsv3.ReadCommit3res(c.call(progNFS, 3, 21, enc(&nfsv3.Commit3args{File: nfsv3.NfsFh3{Data: fh}})))
	if ok, isOK := cr.(*nfsv3.Commit3res_NFS3_OK); !isOK || ok.Resok.Verf != verf {
		t.Fatalf("COMMIT: %#v", cr)
	}
	// count larger than the data is invalid.
	bad := nfsv3.Write3args{File: nfsv3.NfsFh3{Data: fh}, Count: 10, Data: []byte("abc")}
	if res, _, _ := nfsv3.ReadWrite3res(c.call(progNFS, 3, 7, enc(&bad))); res.GetStatus() != nfsv3.NFS3ERR_INVAL {
		t.Fatalf("WRITE count > data: %s", statusName(res.GetStatus()))
	}

	huge := nfsv3.Write3args{File: nfsv3.NfsFh3{Data: fh}, Offset: 1<<64 - 2, Count: 3, Data: []byte("abc")}
	if res, _, _ := nfsv3.ReadWrite3res(c.call(progNFS, 3, 7, enc(&huge))); res.GetStatus() != nfsv3.NFS3ERR_FBIG {
		t.Fatalf("WRITE past 2^63: %s", statusName(res.GetStatus()))
	}

	read := func(off uint64, count uint32) *nfsv3.Read3res_NFS3_OK {
		t.Helper()
		res, _, err := nfsv3.ReadRead3res(c.call(progNFS, 3, 6, enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: off, Count: count})))
		if err != nil {
			t.Fatal(err)
		}
		ok, isOK := res.(*nfsv3.Read3res_NFS3_OK)
		if !isOK {
			t.Fatalf("READ: %s", statusName(res.GetStatus()))
		}
		return ok
	}
	if r := read(0, maxIOBytes); !bytes.Equal(r.Resok.Data, data) || !r.Resok.Eof || r.Resok.Count != maxIOBytes {
		t.Fatalf("READ all: %d bytes eof %v", len(r.Resok.Data), r.Resok.Eof)
	}
	if r := read(0, 2*maxIOBytes); len(r.Resok.Data) != maxIOBytes {
		t.Fatalf("READ over rtmax gave %d bytes", len(r.Resok.Data))
	}
	if r := read(16, 16); string(r.Resok.Data) != "0123456789abcdef" || r.Resok.Eof {
		t.Fatalf("READ middle: %q eof %v", r.Resok.Data, r.Resok.Eof)
	}
}

func TestCreateModes(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	status := func(name string, how nfsv3.Createhow3) nfsv3.Nfsstat3 {
		res, _, _ := nfsv3.ReadCreate3res(c.call(progNFS, 3, procCreate, createArgs(root, name, how)))
		return res.GetStatus()
	}
	v1 := &nfsv3.Createhow3_EXCLUSIVE{Verf: [8]byte{1}}
	for _, tc := range []struct {
		name, file string
		how        nfsv3.Createhow3
		want       nfsv3.Nfsstat3
	}{
		{"guarded new", "g", &nfsv3.Createhow3_GUARDED{ObjAttributes: emptySattr()}, nfsv3.NFS3_OK},
		{"guarded exists", "g", &nfsv3.Createhow3_GUARDED{ObjAttributes: emptySattr()}, nfsv3.NFS3ERR_EXIST},
		{"unchecked exists", "g2", &nfsv3.Createhow3_UNCHECKED{ObjAttributes: emptySattr()}, nfsv3.NFS3_OK},
		{"exclusive", "x", v1, nfsv3.NFS3_OK},
		{"exclusive retry same verifier", "x", v1, nfsv3.NFS3_OK},
		{"exclusive other verifier", "x", &nfsv3.Createhow3_EXCLUSIVE{Verf: [8]byte{2}}, nfsv3.NFS3ERR_EXIST},
		{"dot", ".", v1, nfsv3.NFS3ERR_EXIST},
		{"name too long", string(bytes.Repeat([]byte("a"), 256)), v1, nfsv3.NFS3ERR_NAMETOOLONG},
	} {
		if got := status(tc.file, tc.how); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, statusName(got), statusName(tc.want))
		}
	}
}

func TestMknod(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	for _, tc := range []struct {
		name     string
		what     nfsv3.Mknoddata3
		want     nfsv3.Nfsstat3
		wantType nfsv3.Ftype3
	}{
		{"fifo", &nfsv3.Mknoddata3_NF3FIFO{PipeAttributes: emptySattr()}, nfsv3.NFS3_OK, nfsv3.NF3FIFO},
		{"sock", &nfsv3.Mknoddata3_NF3SOCK{PipeAttributes: emptySattr()}, nfsv3.NFS3_OK, nfsv3.NF3SOCK},
		{"chr", &nfsv3.Mknoddata3_NF3CHR{Device: nfsv3.Devicedata3{DevAttributes: emptySattr(), Spec: nfsv3.Specdata3{Specdata1: 1, Specdata2: 3}}}, nfsv3.NFS3_OK, nfsv3.NF3CHR},
		{"reg", &nfsv3.Mknoddata3_default{Type: nfsv3.NF3REG}, nfsv3.NFS3ERR_BADTYPE, 0},
		{"dir", &nfsv3.Mknoddata3_default{Type: nfsv3.NF3DIR}, nfsv3.NFS3ERR_BADTYPE, 0},
	} {
		res, _, err := nfsv3.ReadMknod3res(c.call(progNFS, 3, procMknod, append(dirop(root, tc.name), enc(tc.what)...)))
		if err != nil {
			t.Fatal(err)
		}
		if res.GetStatus() != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, statusName(res.GetStatus()), statusName(tc.want))
			continue
		}
		if ok, isOK := res.(*nfsv3.Mknod3res_NFS3_OK); isOK {
			if a := ok.Resok.ObjAttributes.(*nfsv3.PostOpAttr_TRUE).Attributes; a.Type != tc.wantType {
				t.Errorf("%s: type %v", tc.name, a.Type)
			}
		}
	}
}

func TestReadOnlyExport(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Exports[0].ReadOnly = true })
	c := dial(t, s.srv.Addr())
	rootFH, root := s.root(t, 1)
	f := s.codec.encode(s.fs.add(root, "f", cachefs.TypeRegular, 0o666))
	sa := emptySattr()
	guard := nfsv3.Sattrguard3_FALSE{}
	rofs := []struct {
		name string
		proc uint32
		args []byte
	}{
		{"SETATTR", 2, append(append(fhArg(f), enc(&sa)...), enc(&guard)...)},
		{"WRITE", 7, enc(&nfsv3.Write3args{File: nfsv3.NfsFh3{Data: f}, Count: 1, Data: []byte("x")})},
		{"CREATE", procCreate, createArgs(rootFH, "n", &nfsv3.Createhow3_GUARDED{ObjAttributes: emptySattr()})},
		{"MKDIR", procMkdir, append(dirop(rootFH, "d"), enc(&sa)...)},
		{"MKNOD", procMknod, append(dirop(rootFH, "p"), enc(&nfsv3.Mknoddata3_NF3FIFO{PipeAttributes: emptySattr()})...)},
		{"REMOVE", procRemove, dirop(rootFH, "f")},
		{"RMDIR", procRmdir, dirop(rootFH, "f")},
		{"RENAME", procRename, append(dirop(rootFH, "f"), dirop(rootFH, "g")...)},
		{"LINK", procLink, append(fhArg(f), dirop(rootFH, "l")...)},
	}
	for _, tc := range rofs {
		r := c.call(progNFS, 3, tc.proc, tc.args)
		st, _, err := runtime.ReadInt(r)
		if err != nil || nfsv3.Nfsstat3(st) != nfsv3.NFS3ERR_ROFS {
			t.Errorf("%s on read-only export: %s %v", tc.name, statusName(nfsv3.Nfsstat3(st)), err)
		}
	}
	res, _, _ := nfsv3.ReadAccess3res(c.call(progNFS, 3, 4, enc(&nfsv3.Access3args{Object: nfsv3.NfsFh3{Data: f}, Access: 0x3f})))
	ok, isOK := res.(*nfsv3.Access3res_NFS3_OK)
	if !isOK || ok.Resok.Access != cachefs.AccessRead|cachefs.AccessLookup|cachefs.AccessExecute {
		t.Fatalf("ACCESS on read-only export: %#v", res)
	}
	if st := getattr(t, c, f).GetStatus(); st != nfsv3.NFS3_OK {
		t.Fatalf("GETATTR on read-only export: %s", statusName(st))
	}
}

func TestSquash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		squash Squash
		cred   rpcv2.OpaqueAuth
		want   cachefs.Cred
	}{
		{"none keeps root", SquashNone, authSys(0, 0, 0, 5), cachefs.Cred{UID: 0, GID: 0, GIDs: []uint32{0, 5}}},
		{"root squashes root", SquashRoot, authSys(0, 0, 0, 5), cachefs.Cred{UID: 65534, GID: 65533, GIDs: []uint32{65533, 5}}},
		{"root keeps users", SquashRoot, authSys(1000, 100, 5), cachefs.Cred{UID: 1000, GID: 100, GIDs: []uint32{5}}},
		{"all squashes users", SquashAll, authSys(1000, 100, 5), cachefs.Cred{UID: 65534, GID: 65533}},
		{"AUTH_NONE is anonymous", SquashNone, rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, cachefs.Cred{UID: 65534, GID: 65533}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, func(c *Config) { c.Exports[0].Squash = tc.squash })
			c := dial(t, s.srv.Addr())
			c.cred = tc.cred
			root, _ := s.root(t, 1)
			if st := getattr(t, c, root).GetStatus(); st != nfsv3.NFS3_OK {
				t.Fatal(statusName(st))
			}
			s.fs.mu.Lock()
			got := s.fs.lastCred
			s.fs.mu.Unlock()
			if got.UID != tc.want.UID || got.GID != tc.want.GID || !equalGIDs(got.GIDs, tc.want.GIDs) {
				t.Fatalf("FS saw %+v, want %+v", got, tc.want)
			}
		})
	}
}

func equalGIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestClientRules(t *testing.T) {
	e := Export{Clients: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true},
		{"10.2.0.1", false},
		{"::ffff:10.1.2.3", true},
		{"fd00::1", true},
		{"127.0.0.1", false},
	} {
		if got := e.allows(mustAddr(tc.addr)); got != tc.want {
			t.Errorf("allows(%s) = %v", tc.addr, got)
		}
	}
	if !(&Export{}).allows(mustAddr("192.0.2.1")) {
		t.Error("empty Clients must admit everyone")
	}
	// Over the wire: an export for other networks refuses 127.0.0.1.
	s := startServer(t, func(c *Config) { c.Exports[0].Clients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	if st := getattr(t, c, root).GetStatus(); st != nfsv3.NFS3ERR_STALE {
		t.Fatalf("GETATTR from outside: %s", statusName(st))
	}
}

func TestFSInfoAndStat(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	res, _, _ := nfsv3.ReadFsinfo3res(c.call(progNFS, 3, 19, fhArg(root)))
	ok, isOK := res.(*nfsv3.Fsinfo3res_NFS3_OK)
	if !isOK {
		t.Fatal(statusName(res.GetStatus()))
	}
	r := ok.Resok
	if r.Rtmax != 1<<20 || r.Wtmax != 1<<20 || r.Rtpref != 1<<20 || r.Wtpref != 1<<20 || r.Dtpref != 64<<10 ||
		r.TimeDelta != (nfsv3.Nfstime3{Nseconds: 1}) ||
		r.Properties != nfsv3.FSF3_LINK|nfsv3.FSF3_SYMLINK|nfsv3.FSF3_HOMOGENEOUS|nfsv3.FSF3_CANSETTIME {
		t.Fatalf("FSINFO %+v", r)
	}
	st, _, _ := nfsv3.ReadFsstat3res(c.call(progNFS, 3, 18, fhArg(root)))
	if ok, isOK := st.(*nfsv3.Fsstat3res_NFS3_OK); !isOK || ok.Resok.Tbytes != 1<<40 || ok.Resok.Afiles != 400 {
		t.Fatalf("FSSTAT %#v", st)
	}
	pc, _, _ := nfsv3.ReadPathconf3res(c.call(progNFS, 3, 20, fhArg(root)))
	if ok, isOK := pc.(*nfsv3.Pathconf3res_NFS3_OK); !isOK || ok.Resok.NameMax != 255 || !ok.Resok.NoTrunc {
		t.Fatalf("PATHCONF %#v", pc)
	}
}

func TestNamespaceOps(t *testing.T) {
	s := startServer(t, nil)
	c := dial(t, s.srv.Addr())
	root, _ := s.root(t, 1)
	sa := emptySattr()
	st := func(r *bytes.Reader) nfsv3.Nfsstat3 {
		v, _, err := runtime.ReadInt(r)
		if err != nil {
			t.Fatal(err)
		}
		return nfsv3.Nfsstat3(v)
	}
	steps := []struct {
		name string
		proc uint32
		args []byte
		want nfsv3.Nfsstat3
	}{
		{"mkdir", procMkdir, append(dirop(root, "d"), enc(&sa)...), nfsv3.NFS3_OK},
		{"lookup missing", procLookup, dirop(root, "nope"), nfsv3.NFS3ERR_NOENT},
		{"create in root", procCreate, createArgs(root, "a", &nfsv3.Createhow3_GUARDED{ObjAttributes: sa}), nfsv3.NFS3_OK},
		{"rename", procRename, append(dirop(root, "a"), dirop(root, "b")...), nfsv3.NFS3_OK},
		{"rename dot", procRename, append(dirop(root, ".."), dirop(root, "c")...), nfsv3.NFS3ERR_INVAL},
		{"remove dir", procRemove, dirop(root, "d"), nfsv3.NFS3ERR_ISDIR},
		{"rmdir file", procRmdir, dirop(root, "b"), nfsv3.NFS3ERR_NOTDIR},
		{"remove", procRemove, dirop(root, "b"), nfsv3.NFS3_OK},
		{"rmdir", procRmdir, dirop(root, "d"), nfsv3.NFS3_OK},
		{"lookup empty name", procLookup, dirop(root, ""), nfsv3.NFS3ERR_ACCES},
	}
	for _, tc := range steps {
		if got := st(c.call(progNFS, 3, tc.proc, tc.args)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, statusName(got), statusName(tc.want))
		}
	}
}

func TestPortmap(t *testing.T) {
	s := startServer(t, func(c *Config) { c.PortmapListen = "127.0.0.1:0" })
	nfsPort := uint32(s.srv.Addr().(*net.TCPAddr).Port)
	pmapPort := uint32(s.srv.PortmapAddr().(*net.TCPAddr).Port)
	getport := func(prog, vers, prot uint32) []byte {
		var b bytes.Buffer
		for _, v := range []uint32{prog, vers, prot, 0} {
			runtime.WriteUnsignedInt(&b, v)
		}
		return b.Bytes()
	}
	c := dial(t, s.srv.PortmapAddr())
	for _, tc := range []struct {
		name             string
		prog, vers, prot uint32
		want             uint32
	}{
		{"nfs tcp", progNFS, 3, ipprotoTCP, nfsPort},
		{"mount tcp", progMount, 3, ipprotoTCP, nfsPort},
		{"nfs udp", progNFS, 3, ipprotoUDP, 0},
		{"nfs v4", progNFS, 4, ipprotoTCP, 0},
		{"nlm", 100021, 4, ipprotoTCP, 0},
		{"portmap itself", progPortmap, 2, ipprotoUDP, pmapPort},
	} {
		port, _, err := runtime.ReadUnsignedInt(c.call(progPortmap, 2, pmapProcGetport, getport(tc.prog, tc.vers, tc.prot)))
		if err != nil || port != tc.want {
			t.Errorf("GETPORT %s: %d %v, want %d", tc.name, port, err, tc.want)
		}
	}
	// DUMP lists our two programs.
	r := c.call(progPortmap, 2, pmapProcDump, nil)
	var n int
	for {
		more, _, err := runtime.ReadUnsignedInt(r)
		if err != nil {
			t.Fatal(err)
		}
		if more == 0 {
			break
		}
		m, err := readMapping(r)
		if err != nil {
			t.Fatal(err)
		}
		if m.prog == progPortmap {
			if m.port != pmapPort {
				t.Fatalf("DUMP lists the portmapper at %d, want %d", m.port, pmapPort)
			}
			continue
		}
		if m.port != nfsPort || m.prot != ipprotoTCP || m.vers != 3 {
			t.Fatalf("DUMP mapping %+v", m)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("DUMP listed %d NFS/MOUNT mappings", n)
	}
	if v, _, _ := runtime.ReadUnsignedInt(c.call(progPortmap, 2, pmapProcSet, getport(1, 2, 6))); v != 0 {
		t.Fatalf("SET answered %d", v)
	}
	if body, _ := c.rawCall(progPortmap, 4, 3, nil); wantMismatch(2, 2)(body) != nil {
		t.Fatalf("rpcbind v4: %v", wantMismatch(2, 2)(body))
	}
	if body, _ := c.rawCall(progNFS, 3, 0, nil); acceptStat(body) != rpcv2.PROG_UNAVAIL {
		t.Fatalf("NFS on the portmap port: %v", acceptStat(body))
	}

	// The same over UDP, one message per datagram.
	uc, err := net.Dial("udp", s.srv.PortmapAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write(callBytes(9, 2, progPortmap, 2, pmapProcGetport, authSys(0, 0), getport(progMount, 3, ipprotoTCP))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	nr, err := uc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var msg rpcv2.RpcMsg
	rd := bytes.NewReader(buf[:nr])
	if _, err := msg.ReadFrom(rd); err != nil || msg.Xid != 9 {
		t.Fatalf("udp reply %v xid %d", err, msg.Xid)
	}
	if port, _, _ := runtime.ReadUnsignedInt(rd); port != nfsPort {
		t.Fatalf("udp GETPORT %d, want %d", port, nfsPort)
	}
}
