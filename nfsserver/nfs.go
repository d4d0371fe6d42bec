package nfsserver

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/nascache/nascache/cachefs"
	"github.com/rs/zerolog"
)

// FSINFO figures.
const (
	dtprefBytes    = 64 << 10
	maxFileBytes   = math.MaxInt64
	ioMultBytes    = 4096
	fsinfoProps    = nfsv3.FSF3_LINK | nfsv3.FSF3_SYMLINK | nfsv3.FSF3_HOMOGENEOUS | nfsv3.FSF3_CANSETTIME
	maxReaddirByte = maxIOBytes
)

// nfsProgram implements NFSv3 (go-xdr's nfsv3.NfsProgram) over an FS. Its
// methods never return an error: every failure is a status in the result,
// which the RPC layer relies on (see rpcHandler.dispatch).
type nfsProgram struct {
	fs      FS
	handles *handleCodec
	exports map[uint16]*Export
	log     zerolog.Logger
	// writeVerf is the write verifier (big endian): random per process
	// and fixed for its life, so that a client learns of a restart and
	// re-sends its unstable writes. It changes only when a WRITE or
	// COMMIT fails at the storage (resetWriteVerf).
	writeVerf atomic.Uint64
}

var _ nfsv3.NfsProgram = (*nfsProgram)(nil)

func newNFSProgram(fs FS, handles *handleCodec, exports map[uint16]*Export, log zerolog.Logger) (*nfsProgram, error) {
	p := &nfsProgram{fs: fs, handles: handles, exports: exports, log: log}
	var v [8]byte
	if _, err := rand.Read(v[:]); err != nil {
		return nil, fmt.Errorf("make write verifier: %w", err)
	}
	p.writeVerf.Store(binary.BigEndian.Uint64(v[:]))
	return p, nil
}

// storageFailed is called with the status of a failed WRITE or COMMIT. A
// failure of the storage itself (I/O, space, quota) may have dropped
// dirty data of earlier unstable writes, not only this call's: Linux
// marks pages clean after a failed writeback, so a later COMMIT could
// succeed over lost data. The write verifier changes, so every client
// re-sends the unstable writes it has not seen committed, as knfsd does
// (commit_reset_write_verifier in fs/nfsd/vfs.c).
func (p *nfsProgram) storageFailed(op string, st nfsv3.Nfsstat3) {
	switch st {
	case nfsv3.NFS3ERR_IO, nfsv3.NFS3ERR_NOSPC, nfsv3.NFS3ERR_DQUOT:
	default:
		return
	}
	old := p.writeVerf.Load()
	next := old + 1
	var v [8]byte
	if _, err := rand.Read(v[:]); err == nil && binary.BigEndian.Uint64(v[:]) != old {
		next = binary.BigEndian.Uint64(v[:])
	}
	// A concurrent reset that won has done the job.
	p.writeVerf.CompareAndSwap(old, next)
	p.log.Warn().Str("op", op).Str("status", statusName(st)).Msg("storage failure: write verifier changed, clients re-send unstable writes")
}

// target is a checked handle: the node, its export and the caller's
// credentials on that export.
type target struct {
	node cachefs.NodeID
	exp  *Export
	cred cachefs.Cred
}

// resolve checks a handle for a call: well-formed with a valid MAC (else
// BADHANDLE), of a configured export (else STALE: the export was
// removed), used by a client the export admits (else STALE, as knfsd),
// and writable when the procedure mutates (else ROFS).
func (p *nfsProgram) resolve(ctx context.Context, fh nfsv3.NfsFh3, mutating bool) (target, nfsv3.Nfsstat3) {
	t, err := p.resolveErr(ctx, fh, mutating)
	st, _ := nfsStatus(err) // every error of resolveErr has a class
	return t, st
}

func (p *nfsProgram) resolveErr(ctx context.Context, fh nfsv3.NfsFh3, mutating bool) (target, error) {
	n, err := p.handles.decode(fh.Data)
	if err != nil {
		return target{}, err
	}
	exp, ok := p.exports[n.Export]
	if !ok {
		return target{}, fmt.Errorf("export %d of handle not configured: %w", n.Export, cachefs.ErrStale)
	}
	ci := callInfoFrom(ctx)
	if !exp.allows(ci.peer) {
		return target{}, fmt.Errorf("client %s on export %s: %w", ci.peer, exp.Path, ErrClientRefused)
	}
	if mutating && exp.ReadOnly {
		return target{}, fmt.Errorf("export %s: %w", exp.Path, cachefs.ErrReadOnly)
	}
	return target{node: n, exp: exp, cred: squash(exp, ci)}, nil
}

// squash returns the credentials a caller acts with on exp.
func squash(exp *Export, ci *callInfo) cachefs.Cred {
	anon := cachefs.Cred{UID: exp.AnonUID, GID: exp.AnonGID}
	if ci.anonymous {
		return anon
	}
	switch exp.Squash {
	case SquashAll:
		return anon
	case SquashRoot:
		c := cachefs.Cred{UID: ci.cred.UID, GID: ci.cred.GID}
		if c.UID == 0 {
			c.UID = exp.AnonUID
		}
		if c.GID == 0 {
			c.GID = exp.AnonGID
		}
		for _, g := range ci.cred.GIDs {
			if g == 0 {
				g = exp.AnonGID
			}
			c.GIDs = append(c.GIDs, g)
		}
		return c
	}
	return ci.cred
}

// status maps an FS error to a status, logging errors of no known class.
func (p *nfsProgram) status(op string, err error) nfsv3.Nfsstat3 {
	st, known := nfsStatus(err)
	if !known {
		p.log.Error().Str("op", op).Err(err).Msg("unclassified file system error, replying NFS3ERR_IO")
	}
	return st
}

// attrOrNone returns post-op attributes for a, or none when a is the zero
// value an FS returns alongside an error.
func attrOrNone(a cachefs.Attr) nfsv3.PostOpAttr {
	if a.Type == 0 {
		return &nfsv3.PostOpAttr_FALSE{}
	}
	return postOpAttr(&a)
}

func (p *nfsProgram) fh(n cachefs.NodeID) nfsv3.PostOpFh3 {
	return &nfsv3.PostOpFh3_TRUE{Handle: nfsv3.NfsFh3{Data: p.handles.encode(n)}}
}

// checkName refuses names no file may have, before the FS sees them.
func checkName(name string) nfsv3.Nfsstat3 {
	switch {
	case len(name) > maxNameBytes:
		return nfsv3.NFS3ERR_NAMETOOLONG
	case name == "":
		return nfsv3.NFS3ERR_ACCES
	}
	return nfsv3.NFS3_OK
}

// checkNewName also refuses "." and "..", which cannot be created.
func checkNewName(name string) nfsv3.Nfsstat3 {
	if name == "." || name == ".." {
		return nfsv3.NFS3ERR_EXIST
	}
	return checkName(name)
}

func (p *nfsProgram) NfsV3Nfsproc3Null(context.Context) error { return nil }

func (p *nfsProgram) NfsV3Nfsproc3Getattr(ctx context.Context, a *nfsv3.Getattr3args) (nfsv3.Getattr3res, error) {
	t, st := p.resolve(ctx, a.Object, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Getattr3res_default{Status: st}, nil
	}
	attr, err := p.fs.GetAttr(ctx, t.cred, t.node)
	if err != nil {
		return &nfsv3.Getattr3res_default{Status: p.status("GETATTR", err)}, nil
	}
	return &nfsv3.Getattr3res_NFS3_OK{Resok: nfsv3.Getattr3resok{ObjAttributes: toFattr(&attr)}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Setattr(ctx context.Context, a *nfsv3.Setattr3args) (nfsv3.Setattr3res, error) {
	t, st := p.resolve(ctx, a.Object, true)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Setattr3res_default{Status: st, Resfail: nfsv3.Setattr3resfail{ObjWcc: noWcc()}}, nil
	}
	var guard *time.Time
	if g, ok := a.Guard.(*nfsv3.Sattrguard3_TRUE); ok {
		c := fromNfstime(g.ObjCtime)
		guard = &c
	}
	wcc, err := p.fs.SetAttr(ctx, t.cred, t.node, fromSattr(&a.NewAttributes), guard)
	if err != nil {
		return &nfsv3.Setattr3res_default{Status: p.status("SETATTR", err), Resfail: nfsv3.Setattr3resfail{ObjWcc: wccData(wcc)}}, nil
	}
	return &nfsv3.Setattr3res_NFS3_OK{Resok: nfsv3.Setattr3resok{ObjWcc: wccData(wcc)}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Lookup(ctx context.Context, a *nfsv3.Lookup3args) (nfsv3.Lookup3res, error) {
	fail := func(st nfsv3.Nfsstat3, dir cachefs.Attr) (nfsv3.Lookup3res, error) {
		return &nfsv3.Lookup3res_default{Status: st, Resfail: nfsv3.Lookup3resfail{DirAttributes: attrOrNone(dir)}}, nil
	}
	t, st := p.resolve(ctx, a.What.Dir, false)
	if st == nfsv3.NFS3_OK {
		st = checkName(a.What.Name)
	}
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.Attr{})
	}
	n, attr, dir, err := p.fs.Lookup(ctx, t.cred, t.node, a.What.Name)
	if err != nil {
		return fail(p.status("LOOKUP", err), dir)
	}
	return &nfsv3.Lookup3res_NFS3_OK{Resok: nfsv3.Lookup3resok{
		Object:        nfsv3.NfsFh3{Data: p.handles.encode(n)},
		ObjAttributes: postOpAttr(&attr),
		DirAttributes: attrOrNone(dir),
	}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Access(ctx context.Context, a *nfsv3.Access3args) (nfsv3.Access3res, error) {
	t, st := p.resolve(ctx, a.Object, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Access3res_default{Status: st, Resfail: nfsv3.Access3resfail{ObjAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	want := a.Access & (cachefs.AccessRead | cachefs.AccessLookup | cachefs.AccessModify | cachefs.AccessExtend | cachefs.AccessDelete | cachefs.AccessExecute)
	got, attr, err := p.fs.Access(ctx, t.cred, t.node, want)
	if err != nil {
		return &nfsv3.Access3res_default{Status: p.status("ACCESS", err), Resfail: nfsv3.Access3resfail{ObjAttributes: attrOrNone(attr)}}, nil
	}
	if t.exp.ReadOnly {
		got &^= cachefs.AccessModify | cachefs.AccessExtend | cachefs.AccessDelete
	}
	return &nfsv3.Access3res_NFS3_OK{Resok: nfsv3.Access3resok{ObjAttributes: postOpAttr(&attr), Access: got & want}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Readlink(ctx context.Context, a *nfsv3.Readlink3args) (nfsv3.Readlink3res, error) {
	t, st := p.resolve(ctx, a.Symlink, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Readlink3res_default{Status: st, Resfail: nfsv3.Readlink3resfail{SymlinkAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	target, attr, err := p.fs.ReadLink(ctx, t.cred, t.node)
	if err != nil {
		return &nfsv3.Readlink3res_default{Status: p.status("READLINK", err), Resfail: nfsv3.Readlink3resfail{SymlinkAttributes: attrOrNone(attr)}}, nil
	}
	return &readlinkOK{nfsv3.Readlink3res_NFS3_OK{Resok: nfsv3.Readlink3resok{SymlinkAttributes: postOpAttr(&attr), Data: target}}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Read(ctx context.Context, a *nfsv3.Read3args) (nfsv3.Read3res, error) {
	t, st := p.resolve(ctx, a.File, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Read3res_default{Status: st, Resfail: nfsv3.Read3resfail{FileAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	count := min(a.Count, maxIOBytes)
	res, err := p.fs.Read(ctx, t.cred, t.node, a.Offset, count)
	if err != nil {
		return &nfsv3.Read3res_default{Status: p.status("READ", err), Resfail: nfsv3.Read3resfail{FileAttributes: attrOrNone(res.Attr)}}, nil
	}
	data := res.Data
	if len(data) > int(count) {
		data = data[:count]
	}
	return &readOK{Read3res_NFS3_OK: nfsv3.Read3res_NFS3_OK{Resok: nfsv3.Read3resok{
		FileAttributes: postOpAttr(&res.Attr),
		Count:          uint32(len(data)),
		Eof:            res.EOF,
		Data:           data,
	}}, release: res.Release}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Write(ctx context.Context, a *nfsv3.Write3args) (nfsv3.Write3res, error) {
	fail := func(st nfsv3.Nfsstat3, w cachefs.WCC) (nfsv3.Write3res, error) {
		return &nfsv3.Write3res_default{Status: st, Resfail: nfsv3.Write3resfail{FileWcc: wccData(w)}}, nil
	}
	t, st := p.resolve(ctx, a.File, true)
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.WCC{})
	}
	stable, ok := fromStableHow(a.Stable)
	if !ok || int(a.Count) > len(a.Data) {
		return fail(nfsv3.NFS3ERR_INVAL, cachefs.WCC{})
	}
	if a.Offset > maxFileBytes-uint64(a.Count) {
		return fail(nfsv3.NFS3ERR_FBIG, cachefs.WCC{})
	}
	res, err := p.fs.Write(ctx, t.cred, t.node, a.Offset, a.Data[:a.Count], stable)
	if err != nil {
		st := p.status("WRITE", err)
		p.storageFailed("WRITE", st)
		return fail(st, res.WCC)
	}
	return &nfsv3.Write3res_NFS3_OK{Resok: nfsv3.Write3resok{
		FileWcc:   wccData(res.WCC),
		Count:     res.Count,
		Committed: toStableHow(res.Committed),
		Verf:      verifierBytes(p.writeVerf.Load()),
	}}, nil
}

// newObject builds the result of the four procedures that create an object.
type newObject struct {
	st   nfsv3.Nfsstat3
	obj  nfsv3.PostOpFh3
	attr nfsv3.PostOpAttr
	wcc  nfsv3.WccData
}

func (p *nfsProgram) create(ctx context.Context, op string, where nfsv3.Diropargs3, fn func(t target) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error)) newObject {
	t, st := p.resolve(ctx, where.Dir, true)
	if st == nfsv3.NFS3_OK {
		st = checkNewName(where.Name)
	}
	if st != nfsv3.NFS3_OK {
		return newObject{st: st, wcc: noWcc()}
	}
	n, attr, wcc, err := fn(t)
	if err != nil {
		return newObject{st: p.status(op, err), wcc: wccData(wcc)}
	}
	return newObject{obj: p.fh(n), attr: postOpAttr(&attr), wcc: wccData(wcc)}
}

func (p *nfsProgram) NfsV3Nfsproc3Create(ctx context.Context, a *nfsv3.Create3args) (nfsv3.Create3res, error) {
	var args cachefs.CreateArgs
	switch h := a.How.(type) {
	case *nfsv3.Createhow3_UNCHECKED:
		args = cachefs.CreateArgs{Mode: cachefs.CreateUnchecked, Attr: fromSattr(&h.ObjAttributes)}
	case *nfsv3.Createhow3_GUARDED:
		args = cachefs.CreateArgs{Mode: cachefs.CreateGuarded, Attr: fromSattr(&h.ObjAttributes)}
	case *nfsv3.Createhow3_EXCLUSIVE:
		args = cachefs.CreateArgs{Mode: cachefs.CreateExclusive, Verifier: h.Verf}
	}
	o := p.create(ctx, "CREATE", a.Where, func(t target) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
		return p.fs.Create(ctx, t.cred, t.node, a.Where.Name, args)
	})
	if o.st != nfsv3.NFS3_OK {
		return &nfsv3.Create3res_default{Status: o.st, Resfail: nfsv3.Create3resfail{DirWcc: o.wcc}}, nil
	}
	return &nfsv3.Create3res_NFS3_OK{Resok: nfsv3.Create3resok{Obj: o.obj, ObjAttributes: o.attr, DirWcc: o.wcc}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Mkdir(ctx context.Context, a *nfsv3.Mkdir3args) (nfsv3.Mkdir3res, error) {
	o := p.create(ctx, "MKDIR", a.Where, func(t target) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
		return p.fs.Mkdir(ctx, t.cred, t.node, a.Where.Name, fromSattr(&a.Attributes))
	})
	if o.st != nfsv3.NFS3_OK {
		return &nfsv3.Mkdir3res_default{Status: o.st, Resfail: nfsv3.Mkdir3resfail{DirWcc: o.wcc}}, nil
	}
	return &nfsv3.Mkdir3res_NFS3_OK{Resok: nfsv3.Mkdir3resok{Obj: o.obj, ObjAttributes: o.attr, DirWcc: o.wcc}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Symlink(ctx context.Context, a *nfsv3.Symlink3args) (nfsv3.Symlink3res, error) {
	o := p.create(ctx, "SYMLINK", a.Where, func(t target) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
		return p.fs.Symlink(ctx, t.cred, t.node, a.Where.Name, a.Symlink.SymlinkData, fromSattr(&a.Symlink.SymlinkAttributes))
	})
	if o.st != nfsv3.NFS3_OK {
		return &nfsv3.Symlink3res_default{Status: o.st, Resfail: nfsv3.Symlink3resfail{DirWcc: o.wcc}}, nil
	}
	return &nfsv3.Symlink3res_NFS3_OK{Resok: nfsv3.Symlink3resok{Obj: o.obj, ObjAttributes: o.attr, DirWcc: o.wcc}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Mknod(ctx context.Context, a *nfsv3.Mknod3args) (nfsv3.Mknod3res, error) {
	var (
		ft           cachefs.FileType
		sa           cachefs.SetAttr
		major, minor uint32
	)
	switch w := a.What.(type) {
	case *nfsv3.Mknoddata3_NF3CHR:
		ft, sa, major, minor = cachefs.TypeChar, fromSattr(&w.Device.DevAttributes), w.Device.Spec.Specdata1, w.Device.Spec.Specdata2
	case *nfsv3.Mknoddata3_NF3BLK:
		ft, sa, major, minor = cachefs.TypeBlock, fromSattr(&w.Device.DevAttributes), w.Device.Spec.Specdata1, w.Device.Spec.Specdata2
	case *nfsv3.Mknoddata3_NF3SOCK:
		ft, sa = cachefs.TypeSocket, fromSattr(&w.PipeAttributes)
	case *nfsv3.Mknoddata3_NF3FIFO:
		ft, sa = cachefs.TypeFIFO, fromSattr(&w.PipeAttributes)
	default:
		return &nfsv3.Mknod3res_default{Status: nfsv3.NFS3ERR_BADTYPE, Resfail: nfsv3.Mknod3resfail{DirWcc: noWcc()}}, nil
	}
	o := p.create(ctx, "MKNOD", a.Where, func(t target) (cachefs.NodeID, cachefs.Attr, cachefs.WCC, error) {
		return p.fs.Mknod(ctx, t.cred, t.node, a.Where.Name, ft, sa, major, minor)
	})
	if o.st != nfsv3.NFS3_OK {
		return &nfsv3.Mknod3res_default{Status: o.st, Resfail: nfsv3.Mknod3resfail{DirWcc: o.wcc}}, nil
	}
	return &nfsv3.Mknod3res_NFS3_OK{Resok: nfsv3.Mknod3resok{Obj: o.obj, ObjAttributes: o.attr, DirWcc: o.wcc}}, nil
}

// unlink runs REMOVE or RMDIR.
func (p *nfsProgram) unlink(ctx context.Context, op string, d nfsv3.Diropargs3, fn func(cachefs.Cred, cachefs.NodeID, string) (cachefs.WCC, error)) (nfsv3.Nfsstat3, nfsv3.WccData) {
	t, st := p.resolve(ctx, d.Dir, true)
	if st == nfsv3.NFS3_OK {
		st = checkName(d.Name)
	}
	if st != nfsv3.NFS3_OK {
		return st, noWcc()
	}
	wcc, err := fn(t.cred, t.node, d.Name)
	return p.statusOK(op, err), wccData(wcc)
}

func (p *nfsProgram) statusOK(op string, err error) nfsv3.Nfsstat3 {
	if err == nil {
		return nfsv3.NFS3_OK
	}
	return p.status(op, err)
}

func (p *nfsProgram) NfsV3Nfsproc3Remove(ctx context.Context, a *nfsv3.Remove3args) (nfsv3.Remove3res, error) {
	st, wcc := p.unlink(ctx, "REMOVE", a.Object, func(c cachefs.Cred, n cachefs.NodeID, name string) (cachefs.WCC, error) {
		return p.fs.Remove(ctx, c, n, name)
	})
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Remove3res_default{Status: st, Resfail: nfsv3.Remove3resfail{DirWcc: wcc}}, nil
	}
	return &nfsv3.Remove3res_NFS3_OK{Resok: nfsv3.Remove3resok{DirWcc: wcc}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Rmdir(ctx context.Context, a *nfsv3.Rmdir3args) (nfsv3.Rmdir3res, error) {
	st, wcc := p.unlink(ctx, "RMDIR", a.Object, func(c cachefs.Cred, n cachefs.NodeID, name string) (cachefs.WCC, error) {
		return p.fs.Rmdir(ctx, c, n, name)
	})
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Rmdir3res_default{Status: st, Resfail: nfsv3.Rmdir3resfail{DirWcc: wcc}}, nil
	}
	return &nfsv3.Rmdir3res_NFS3_OK{Resok: nfsv3.Rmdir3resok{DirWcc: wcc}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Rename(ctx context.Context, a *nfsv3.Rename3args) (nfsv3.Rename3res, error) {
	fail := func(st nfsv3.Nfsstat3, from, to nfsv3.WccData) (nfsv3.Rename3res, error) {
		return &nfsv3.Rename3res_default{Status: st, Resfail: nfsv3.Rename3resfail{FromdirWcc: from, TodirWcc: to}}, nil
	}
	from, st := p.resolve(ctx, a.From.Dir, true)
	if st != nfsv3.NFS3_OK {
		return fail(st, noWcc(), noWcc())
	}
	to, st := p.resolve(ctx, a.To.Dir, true)
	switch {
	case st != nfsv3.NFS3_OK:
	case from.node.Export != to.node.Export:
		st = nfsv3.NFS3ERR_XDEV
	case a.From.Name == "." || a.From.Name == "..":
		st = nfsv3.NFS3ERR_INVAL
	default:
		if st = checkName(a.From.Name); st == nfsv3.NFS3_OK {
			st = checkNewName(a.To.Name)
		}
	}
	if st != nfsv3.NFS3_OK {
		return fail(st, noWcc(), noWcc())
	}
	fw, tw, err := p.fs.Rename(ctx, from.cred, from.node, a.From.Name, to.node, a.To.Name)
	if err != nil {
		return fail(p.status("RENAME", err), wccData(fw), wccData(tw))
	}
	return &nfsv3.Rename3res_NFS3_OK{Resok: nfsv3.Rename3resok{FromdirWcc: wccData(fw), TodirWcc: wccData(tw)}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Link(ctx context.Context, a *nfsv3.Link3args) (nfsv3.Link3res, error) {
	fail := func(st nfsv3.Nfsstat3, attr cachefs.Attr, w nfsv3.WccData) (nfsv3.Link3res, error) {
		return &nfsv3.Link3res_default{Status: st, Resfail: nfsv3.Link3resfail{FileAttributes: attrOrNone(attr), LinkdirWcc: w}}, nil
	}
	file, st := p.resolve(ctx, a.File, true)
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.Attr{}, noWcc())
	}
	dir, st := p.resolve(ctx, a.Link.Dir, true)
	switch {
	case st != nfsv3.NFS3_OK:
	case file.node.Export != dir.node.Export:
		st = nfsv3.NFS3ERR_XDEV
	default:
		st = checkNewName(a.Link.Name)
	}
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.Attr{}, noWcc())
	}
	attr, wcc, err := p.fs.Link(ctx, dir.cred, file.node, dir.node, a.Link.Name)
	if err != nil {
		return fail(p.status("LINK", err), attr, wccData(wcc))
	}
	return &nfsv3.Link3res_NFS3_OK{Resok: nfsv3.Link3resok{FileAttributes: postOpAttr(&attr), LinkdirWcc: wccData(wcc)}}, nil
}

func verifierBytes(v uint64) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b
}

func (p *nfsProgram) NfsV3Nfsproc3Readdir(ctx context.Context, a *nfsv3.Readdir3args) (nfsv3.Readdir3res, error) {
	fail := func(st nfsv3.Nfsstat3, attr cachefs.Attr) (nfsv3.Readdir3res, error) {
		return &nfsv3.Readdir3res_default{Status: st, Resfail: nfsv3.Readdir3resfail{DirAttributes: attrOrNone(attr)}}, nil
	}
	t, st := p.resolve(ctx, a.Dir, false)
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.Attr{})
	}
	// count bounds the whole READDIR3resok (RFC 1813 3.3.16), with
	// directory attributes (always sent) and the end of the list.
	budget := int(min(a.Count, maxReaddirByte)) - readdirOKFixedBytes - (&nfsv3.PostOpAttr_TRUE{}).GetEncodedSizeBytes()
	var res readdirOK
	res.entries = make([]readdirEntry, 0, 64)
	used := 0
	r, err := p.fs.ReadDir(ctx, t.cred, t.node, a.Cookie, binary.BigEndian.Uint64(a.Cookieverf[:]), func(e cachefs.DirEntry) bool {
		de := readdirEntry{fileid: e.Node.Ino, name: e.Name, cookie: e.Cookie}
		if used+de.size() > budget {
			return false
		}
		used += de.size()
		res.entries = append(res.entries, de)
		return true
	})
	if err != nil {
		return fail(p.status("READDIR", err), r.DirAttr)
	}
	if len(res.entries) == 0 && !r.EOF {
		return fail(nfsv3.NFS3ERR_TOOSMALL, r.DirAttr)
	}
	res.Resok.DirAttributes = postOpAttr(&r.DirAttr)
	res.Resok.Cookieverf = verifierBytes(r.Verifier)
	res.Resok.Reply.Eof = r.EOF
	return &res, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Readdirplus(ctx context.Context, a *nfsv3.Readdirplus3args) (nfsv3.Readdirplus3res, error) {
	fail := func(st nfsv3.Nfsstat3, attr cachefs.Attr) (nfsv3.Readdirplus3res, error) {
		return &nfsv3.Readdirplus3res_default{Status: st, Resfail: nfsv3.Readdirplus3resfail{DirAttributes: attrOrNone(attr)}}, nil
	}
	t, st := p.resolve(ctx, a.Dir, false)
	if st != nfsv3.NFS3_OK {
		return fail(st, cachefs.Attr{})
	}
	// maxcount bounds the whole READDIRPLUS3resok; dircount only the
	// directory part of the entries (fileid, name, cookie), as if it
	// were a READDIR reply (RFC 1813 3.3.17).
	maxBudget := int(min(a.Maxcount, maxReaddirByte)) - readdirOKFixedBytes - (&nfsv3.PostOpAttr_TRUE{}).GetEncodedSizeBytes()
	dirBudget := int(a.Dircount)
	var res readdirplusOK
	res.entries = make([]readdirplusEntry, 0, 64)
	used, dirUsed := 0, 0
	r, err := p.fs.ReadDir(ctx, t.cred, t.node, a.Cookie, binary.BigEndian.Uint64(a.Cookieverf[:]), func(e cachefs.DirEntry) bool {
		de := readdirplusEntry{
			readdirEntry: readdirEntry{fileid: e.Node.Ino, name: e.Name, cookie: e.Cookie},
			attr:         attrOrNone(e.Attr),
			handle:       p.fh(e.Node),
		}
		if used+de.size() > maxBudget || dirUsed+de.readdirEntry.size() > dirBudget {
			return false
		}
		used += de.size()
		dirUsed += de.readdirEntry.size()
		res.entries = append(res.entries, de)
		return true
	})
	if err != nil {
		return fail(p.status("READDIRPLUS", err), r.DirAttr)
	}
	if len(res.entries) == 0 && !r.EOF {
		return fail(nfsv3.NFS3ERR_TOOSMALL, r.DirAttr)
	}
	res.Resok.DirAttributes = postOpAttr(&r.DirAttr)
	res.Resok.Cookieverf = verifierBytes(r.Verifier)
	res.Resok.Reply.Eof = r.EOF
	return &res, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Fsstat(ctx context.Context, a *nfsv3.Fsstat3args) (nfsv3.Fsstat3res, error) {
	t, st := p.resolve(ctx, a.Fsroot, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Fsstat3res_default{Status: st, Resfail: nfsv3.Fsstat3resfail{ObjAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	s, attr, err := p.fs.FSStat(ctx, t.cred, t.node)
	if err != nil {
		return &nfsv3.Fsstat3res_default{Status: p.status("FSSTAT", err), Resfail: nfsv3.Fsstat3resfail{ObjAttributes: attrOrNone(attr)}}, nil
	}
	return &nfsv3.Fsstat3res_NFS3_OK{Resok: nfsv3.Fsstat3resok{
		ObjAttributes: postOpAttr(&attr),
		Tbytes:        s.TotalBytes,
		Fbytes:        s.FreeBytes,
		Abytes:        s.AvailBytes,
		Tfiles:        s.TotalFiles,
		Ffiles:        s.FreeFiles,
		Afiles:        s.AvailFiles,
	}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Fsinfo(ctx context.Context, a *nfsv3.Fsinfo3args) (nfsv3.Fsinfo3res, error) {
	t, st := p.resolve(ctx, a.Fsroot, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Fsinfo3res_default{Status: st, Resfail: nfsv3.Fsinfo3resfail{ObjAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	attr, err := p.fs.GetAttr(ctx, t.cred, t.node)
	if err != nil {
		return &nfsv3.Fsinfo3res_default{Status: p.status("FSINFO", err), Resfail: nfsv3.Fsinfo3resfail{ObjAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	return &nfsv3.Fsinfo3res_NFS3_OK{Resok: nfsv3.Fsinfo3resok{
		ObjAttributes: postOpAttr(&attr),
		Rtmax:         maxIOBytes,
		Rtpref:        maxIOBytes,
		Rtmult:        ioMultBytes,
		Wtmax:         maxIOBytes,
		Wtpref:        maxIOBytes,
		Wtmult:        ioMultBytes,
		Dtpref:        dtprefBytes,
		Maxfilesize:   maxFileBytes,
		TimeDelta:     nfsv3.Nfstime3{Seconds: 0, Nseconds: 1},
		Properties:    fsinfoProps,
	}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Pathconf(ctx context.Context, a *nfsv3.Pathconf3args) (nfsv3.Pathconf3res, error) {
	t, st := p.resolve(ctx, a.Object, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Pathconf3res_default{Status: st, Resfail: nfsv3.Pathconf3resfail{ObjAttributes: &nfsv3.PostOpAttr_FALSE{}}}, nil
	}
	pc, attr, err := p.fs.PathConf(ctx, t.cred, t.node)
	if err != nil {
		return &nfsv3.Pathconf3res_default{Status: p.status("PATHCONF", err), Resfail: nfsv3.Pathconf3resfail{ObjAttributes: attrOrNone(attr)}}, nil
	}
	return &nfsv3.Pathconf3res_NFS3_OK{Resok: nfsv3.Pathconf3resok{
		ObjAttributes:   postOpAttr(&attr),
		Linkmax:         pc.LinkMax,
		NameMax:         pc.NameMax,
		NoTrunc:         pc.NoTrunc,
		ChownRestricted: pc.ChownRestricted,
		CaseInsensitive: pc.CaseInsensitive,
		CasePreserving:  pc.CasePreserving,
	}}, nil
}

func (p *nfsProgram) NfsV3Nfsproc3Commit(ctx context.Context, a *nfsv3.Commit3args) (nfsv3.Commit3res, error) {
	t, st := p.resolve(ctx, a.File, false)
	if st != nfsv3.NFS3_OK {
		return &nfsv3.Commit3res_default{Status: st, Resfail: nfsv3.Commit3resfail{FileWcc: noWcc()}}, nil
	}
	wcc, err := p.fs.Commit(ctx, t.cred, t.node)
	if err != nil {
		st := p.status("COMMIT", err)
		p.storageFailed("COMMIT", st)
		return &nfsv3.Commit3res_default{Status: st, Resfail: nfsv3.Commit3resfail{FileWcc: wccData(wcc)}}, nil
	}
	return &nfsv3.Commit3res_NFS3_OK{Resok: nfsv3.Commit3resok{FileWcc: wccData(wcc), Verf: verifierBytes(p.writeVerf.Load())}}, nil
}
