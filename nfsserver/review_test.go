package nfsserver

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/meta"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// panicFS panics in GetAttr, standing in for a broken invariant below the
// server.
type panicFS struct{ *fakeFS }

func (panicFS) GetAttr(context.Context, cachefs.Cred, cachefs.NodeID) (cachefs.Attr, error) {
	panic("broken invariant")
}

// A panic while serving one call fails that call with SYSTEM_ERR; the
// process and the connection live on.
func TestPanicInCallIsSystemErr(t *testing.T) {
	cfg := testConfig()
	fs := panicFS{newFakeFS(1)}
	srv, err := New(cfg, fs, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	codec, err := newHandleCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := fs.Root(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addr())
	body, _ := c.rawCall(progNFS, 3, 1, fhArg(codec.encode(n)))
	if st := acceptStat(body); st != rpcv2.SYSTEM_ERR {
		t.Fatalf("GETATTR that panics: accept stat %v, want SYSTEM_ERR", st)
	}
	c.call(progNFS, 3, 0, nil) // NULL on the same connection still works
}

// startRealServer runs a Server over the real stack (cachefs, meta and a
// local origin in a temporary directory) and returns it with the origin
// directory.
func startRealServer(t *testing.T) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), meta.Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	id, err := db.ExportID("/data")
	if err != nil {
		t.Fatal(err)
	}
	o, err := local.New(dir, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	fs, err := cachefs.New(cachefs.Config{Exports: []cachefs.ExportConfig{{ID: id, Path: "/data", Origin: o}}}, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.HandleKey = db.HandleKey()
	cfg.Exports = []Export{{ID: id, Path: "/data", AnonUID: 65534, AnonGID: 65534}}
	srv, err := New(cfg, fs, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv, dir
}

// TestEdgeArgsRealStack sends boundary arguments through the whole stack:
// offsets near 2^64, zero and huge counts, tiny READDIR counts, guards.
func TestEdgeArgsRealStack(t *testing.T) {
	srv, dir := startRealServer(t)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("0123456789"), 0o666); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addr())
	c.cred = authSys(0, 0)
	st, root := c.mnt("/data")
	if st != mount.MNT3_OK {
		t.Fatalf("MNT: %v", st)
	}
	lres, _, err := nfsv3.ReadLookup3res(c.call(progNFS, 3, 3, dirop(root, "f")))
	if err != nil {
		t.Fatal(err)
	}
	lok, ok := lres.(*nfsv3.Lookup3res_NFS3_OK)
	if !ok {
		t.Fatalf("LOOKUP f: %v", lres.GetStatus())
	}
	fh := lok.Resok.Object.Data

	read := func(off uint64, count uint32) nfsv3.Read3res {
		t.Helper()
		res, _, err := nfsv3.ReadRead3res(c.call(progNFS, 3, 6, enc(&nfsv3.Read3args{File: nfsv3.NfsFh3{Data: fh}, Offset: off, Count: count})))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tc := range []struct {
		off   uint64
		count uint32
		data  string
		eof   bool
	}{
		{0, 0, "", false},
		{0, 4, "0123", false},
		{6, 4, "6789", true},
		{6, 1 << 31, "6789", true},
		{10, 1, "", true},
		{math.MaxUint64, math.MaxUint32, "", true},
		{1 << 62, 10, "", true},
	} {
		res := read(tc.off, tc.count)
		ok, isOK := res.(*nfsv3.Read3res_NFS3_OK)
		if !isOK || string(ok.Resok.Data) != tc.data || ok.Resok.Eof != tc.eof || ok.Resok.Count != uint32(len(tc.data)) {
			t.Errorf("READ %d+%d: %+v, want %q eof=%v", tc.off, tc.count, res, tc.data, tc.eof)
		}
	}

	write := func(off uint64, data []byte) nfsv3.Nfsstat3 {
		t.Helper()
		res, _, err := nfsv3.ReadWrite3res(c.call(progNFS, 3, 7, enc(&nfsv3.Write3args{File: nfsv3.NfsFh3{Data: fh}, Offset: off, Count: uint32(len(data)), Stable: nfsv3.FILE_SYNC, Data: data})))
		if err != nil {
			t.Fatal(err)
		}
		return res.GetStatus()
	}
	for _, off := range []uint64{math.MaxUint64, math.MaxUint64 - 3, 1 << 63} {
		if st := write(off, []byte("abcd")); st != nfsv3.NFS3ERR_FBIG {
			t.Errorf("WRITE at %d: %s, want NFS3ERR_FBIG", off, statusName(st))
		}
	}
	if st := write(10, nil); st != nfsv3.NFS3_OK {
		t.Errorf("WRITE of 0 bytes: %s", statusName(st))
	}

	readdir := func(cookie uint64, count uint32) nfsv3.Readdir3res {
		t.Helper()
		res, _, err := nfsv3.ReadReaddir3res(c.call(progNFS, 3, 16, enc(&nfsv3.Readdir3args{Dir: nfsv3.NfsFh3{Data: root}, Cookie: cookie, Count: count})))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, count := range []uint32{0, 1, 100} {
		if st := readdir(0, count).GetStatus(); st != nfsv3.NFS3ERR_TOOSMALL {
			t.Errorf("READDIR count %d: %s, want NFS3ERR_TOOSMALL", count, statusName(st))
		}
	}
	if res, ok := readdir(math.MaxUint64, 4096).(*nfsv3.Readdir3res_NFS3_OK); !ok || !res.Resok.Reply.Eof {
		t.Errorf("READDIR from cookie 2^64-1: %+v, want OK at EOF", res)
	}

	// SETATTR size under a ctime guard: the wrong ctime is refused with
	// the file untouched, the right one truncates.
	gres, _, err := nfsv3.ReadGetattr3res(c.call(progNFS, 3, 1, fhArg(fh)))
	if err != nil {
		t.Fatal(err)
	}
	ctime := gres.(*nfsv3.Getattr3res_NFS3_OK).Resok.ObjAttributes.Ctime
	setattr := func(guard nfsv3.Nfstime3) nfsv3.Nfsstat3 {
		t.Helper()
		args := nfsv3.Setattr3args{Object: nfsv3.NfsFh3{Data: fh}, NewAttributes: nfsv3.Sattr3{
			Mode: &nfsv3.SetMode3_default{}, Uid: &nfsv3.SetUid3_default{}, Gid: &nfsv3.SetGid3_default{},
			Size:  &nfsv3.SetSize3_TRUE{Size: 3},
			Atime: &nfsv3.SetAtime_default{SetIt: nfsv3.DONT_CHANGE}, Mtime: &nfsv3.SetMtime_default{SetIt: nfsv3.DONT_CHANGE},
		}, Guard: &nfsv3.Sattrguard3_TRUE{ObjCtime: guard}}
		res, _, err := nfsv3.ReadSetattr3res(c.call(progNFS, 3, 2, enc(&args)))
		if err != nil {
			t.Fatal(err)
		}
		return res.GetStatus()
	}
	wrong := ctime
	wrong.Nseconds ^= 1
	if st := setattr(wrong); st != nfsv3.NFS3ERR_NOT_SYNC {
		t.Errorf("SETATTR with a wrong guard: %s", statusName(st))
	}
	if st := setattr(ctime); st != nfsv3.NFS3_OK {
		t.Errorf("SETATTR with the right guard: %s", statusName(st))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "012" {
		t.Errorf("origin after guarded truncate: %q %v", b, err)
	}
}

// commitFailFS fails COMMIT with an I/O error while fail is set.
type commitFailFS struct {
	*fakeFS
	fail atomic.Bool
}

func (f *commitFailFS) Commit(ctx context.Context, cred cachefs.Cred, n cachefs.NodeID) (cachefs.WCC, error) {
	if f.fail.Load() {
		return cachefs.WCC{}, fmt.Errorf("fsync: %w", cachefs.ErrIO)
	}
	return f.fakeFS.Commit(ctx, cred, n)
}

// The write verifier stays the same across WRITEs and COMMITs, and
// changes after a COMMIT failed at the storage, so that clients re-send
// unstable writes whose data the failed sync may have dropped.
func TestWriteVerifierChangesAfterStorageFailure(t *testing.T) {
	fs := &commitFailFS{fakeFS: newFakeFS(1)}
	srv, err := New(testConfig(), fs, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	codec, err := newHandleCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := fs.Root(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	fh := codec.encode(fs.add(root, "f", cachefs.TypeRegular, 0o666))
	c := dial(t, srv.Addr())
	write := func() [8]byte {
		t.Helper()
		res, _, err := nfsv3.ReadWrite3res(c.call(progNFS, 3, 7, enc(&nfsv3.Write3args{File: nfsv3.NfsFh3{Data: fh}, Count: 3, Stable: nfsv3.UNSTABLE, Data: []byte("abc")})))
		if err != nil {
			t.Fatal(err)
		}
		ok, isOK := res.(*nfsv3.Write3res_NFS3_OK)
		if !isOK {
			t.Fatalf("WRITE: %s", statusName(res.GetStatus()))
		}
		return ok.Resok.Verf
	}
	commit := func() (nfsv3.Nfsstat3, [8]byte) {
		t.Helper()
		res, _, err := nfsv3.ReadCommit3res(c.call(progNFS, 3, 21, enc(&nfsv3.Commit3args{File: nfsv3.NfsFh3{Data: fh}})))
		if err != nil {
			t.Fatal(err)
		}
		if ok, isOK := res.(*nfsv3.Commit3res_NFS3_OK); isOK {
			return nfsv3.NFS3_OK, ok.Resok.Verf
		}
		return res.GetStatus(), [8]byte{}
	}
	v1 := write()
	if st, v := commit(); st != nfsv3.NFS3_OK || v != v1 || write() != v1 {
		t.Fatalf("verifier not stable: WRITE %x, COMMIT %s %x", v1, statusName(st), v)
	}
	fs.fail.Store(true)
	if st, _ := commit(); st != nfsv3.NFS3ERR_IO {
		t.Fatalf("failing COMMIT: %s", statusName(st))
	}
	fs.fail.Store(false)
	st, v2 := commit()
	if st != nfsv3.NFS3_OK || v2 == v1 {
		t.Fatalf("COMMIT after a storage failure: %s, verifier %x (was %x)", statusName(st), v2, v1)
	}
	if v := write(); v != v2 {
		t.Fatalf("WRITE after the reset: verifier %x, want %x", v, v2)
	}
}
