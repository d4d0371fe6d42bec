package nfsserver

// File names and symlink targets are byte strings in NFSv3 (RFC 1813
// filename3 / nfspath3 are XDR strings, and clients send UTF-8 and other
// bytes), but go-xdr's generated code reads and writes them as ASCII only:
// it would refuse every call naming a file "café" and fail to encode a
// listing that contains one. So the procedures whose arguments carry names
// are decoded here, with the generated decoders for every other field, and
// the three results that carry names (READDIR, READDIRPLUS, READLINK) are
// encoded here by types that embed the generated ones.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/runtime"
)

const (
	// maxNameDecodeBytes bounds a decoded file name. Longer names are
	// refused as garbage; names over maxNameBytes get NFS3ERR_NAMETOOLONG.
	maxNameDecodeBytes = 1024
	maxNameBytes       = 255
	// maxPathBytes bounds a symlink target (PATH_MAX).
	maxPathBytes = 4096
)

var errBadName = errors.New("nfsserver: file name contains NUL or '/'")

// nfsProc numbers used by the RPC layer.
const (
	procLookup  = 3
	procCreate  = 8
	procMkdir   = 9
	procSymlink = 10
	procMknod   = 11
	procRemove  = 12
	procRmdir   = 13
	procRename  = 14
	procLink    = 15
)

// nameProc decodes the arguments of an NFSv3 procedure that carries file
// names and runs it. handled is false for the other procedures, which go
// through the generated dispatcher.
func nameProc(p *nfsProgram, ctx context.Context, proc uint32, r io.Reader) (res encodable, handled bool, err error) {
	switch proc {
	case procLookup:
		var a nfsv3.Lookup3args
		if err := readDirop(r, &a.What); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Lookup(ctx, &a)
	case procCreate:
		var a nfsv3.Create3args
		if err := readDirop(r, &a.Where); err != nil {
			return nil, true, err
		}
		if a.How, _, err = nfsv3.ReadCreatehow3(r); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Create(ctx, &a)
	case procMkdir:
		var a nfsv3.Mkdir3args
		if err := readDirop(r, &a.Where); err != nil {
			return nil, true, err
		}
		if _, err := a.Attributes.ReadFrom(r); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Mkdir(ctx, &a)
	case procSymlink:
		var a nfsv3.Symlink3args
		if err := readDirop(r, &a.Where); err != nil {
			return nil, true, err
		}
		if _, err := a.Symlink.SymlinkAttributes.ReadFrom(r); err != nil {
			return nil, true, err
		}
		b, _, err := runtime.ReadVariableLengthOpaque(r, maxPathBytes)
		if err != nil {
			return nil, true, err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil, true, errBadName
		}
		a.Symlink.SymlinkData = string(b)
		res, _ = p.NfsV3Nfsproc3Symlink(ctx, &a)
	case procMknod:
		var a nfsv3.Mknod3args
		if err := readDirop(r, &a.Where); err != nil {
			return nil, true, err
		}
		if a.What, _, err = nfsv3.ReadMknoddata3(r); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Mknod(ctx, &a)
	case procRemove:
		var a nfsv3.Remove3args
		if err := readDirop(r, &a.Object); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Remove(ctx, &a)
	case procRmdir:
		var a nfsv3.Rmdir3args
		if err := readDirop(r, &a.Object); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Rmdir(ctx, &a)
	case procRename:
		var a nfsv3.Rename3args
		if err := readDirop(r, &a.From); err != nil {
			return nil, true, err
		}
		if err := readDirop(r, &a.To); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Rename(ctx, &a)
	case procRead:
		// Not a name, but decoded here too: the result is sent
		// without copying its data (see read.go).
		res, err = readProc(p, ctx, r)
		if err != nil {
			return nil, true, err
		}
	case procLink:
		var a nfsv3.Link3args
		if _, err := a.File.ReadFrom(r); err != nil {
			return nil, true, err
		}
		if err := readDirop(r, &a.Link); err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Link(ctx, &a)
	default:
		return nil, false, nil
	}
	return res, true, nil
}

// readDirop decodes diropargs3 with a byte-string name. Like knfsd, a name
// holding NUL or '/' makes the arguments garbage.
func readDirop(r io.Reader, d *nfsv3.Diropargs3) error {
	if _, err := d.Dir.ReadFrom(r); err != nil {
		return err
	}
	b, _, err := runtime.ReadVariableLengthOpaque(r, maxNameDecodeBytes)
	if err != nil {
		return err
	}
	if bytes.IndexByte(b, 0) >= 0 || bytes.IndexByte(b, '/') >= 0 {
		return fmt.Errorf("decode name %q: %w", b, errBadName)
	}
	d.Name = string(b)
	return nil
}

// xdrWriter writes XDR items and keeps the first error and the count.
type xdrWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (x *xdrWriter) add(n int64, err error) {
	x.n += n
	if x.err == nil {
		x.err = err
	}
}

func (x *xdrWriter) u32(v uint32) {
	if x.err == nil {
		x.add(runtime.WriteUnsignedInt(x.w, v))
	}
}

func (x *xdrWriter) u64(v uint64) {
	if x.err == nil {
		x.add(runtime.WriteUnsignedHyper(x.w, v))
	}
}

func (x *xdrWriter) bytes(b []byte) {
	if x.err == nil {
		x.add(runtime.WriteVariableLengthOpaque(x.w, ^uint32(0), b))
	}
}

func (x *xdrWriter) str(s string) { x.bytes([]byte(s)) }

func (x *xdrWriter) fixed(b []byte) {
	if x.err == nil {
		x.add(runtime.WriteFixedLengthOpaque(x.w, b))
	}
}

func (x *xdrWriter) item(v io.WriterTo) {
	if x.err == nil {
		x.add(v.WriteTo(x.w))
	}
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// opaqueSize is the encoded size of a variable-length opaque of n bytes.
func opaqueSize(n int) int { return 4 + (n+3)&^3 }

// readdirEntry is one entry of a READDIR reply.
type readdirEntry struct {
	fileid uint64
	name   string
	cookie uint64
}

func (e *readdirEntry) size() int { return 4 + 8 + opaqueSize(len(e.name)) + 8 }

// readdirOK is a READDIR3resok whose entries are encoded with byte-string
// names. Resok.Reply.Entries is unused; entries holds them.
type readdirOK struct {
	nfsv3.Readdir3res_NFS3_OK
	entries []readdirEntry
}

// readdirOKFixedBytes is the size of a READDIR3resok without entries and
// without its post-op attributes: status, cookieverf, end of list, eof.
const readdirOKFixedBytes = 4 + 8 + 4 + 4

func (m *readdirOK) GetEncodedSizeBytes() int {
	n := readdirOKFixedBytes + m.Resok.DirAttributes.GetEncodedSizeBytes()
	for i := range m.entries {
		n += m.entries[i].size()
	}
	return n
}

func (m *readdirOK) WriteTo(w io.Writer) (int64, error) {
	x := xdrWriter{w: w}
	x.u32(uint32(nfsv3.NFS3_OK))
	x.item(m.Resok.DirAttributes)
	x.fixed(m.Resok.Cookieverf[:])
	for i := range m.entries {
		e := &m.entries[i]
		x.u32(1)
		x.u64(e.fileid)
		x.str(e.name)
		x.u64(e.cookie)
	}
	x.u32(0)
	x.u32(boolU32(m.Resok.Reply.Eof))
	return x.n, x.err
}

// readdirplusEntry is one entry of a READDIRPLUS reply.
type readdirplusEntry struct {
	readdirEntry
	attr   nfsv3.PostOpAttr
	handle nfsv3.PostOpFh3
}

func (e *readdirplusEntry) size() int {
	return e.readdirEntry.size() + e.attr.GetEncodedSizeBytes() + e.handle.GetEncodedSizeBytes()
}

// readdirplusOK is READDIRPLUS3resok with byte-string names, as readdirOK.
type readdirplusOK struct {
	nfsv3.Readdirplus3res_NFS3_OK
	entries []readdirplusEntry
}

func (m *readdirplusOK) GetEncodedSizeBytes() int {
	n := readdirOKFixedBytes + m.Resok.DirAttributes.GetEncodedSizeBytes()
	for i := range m.entries {
		n += m.entries[i].size()
	}
	return n
}

func (m *readdirplusOK) WriteTo(w io.Writer) (int64, error) {
	x := xdrWriter{w: w}
	x.u32(uint32(nfsv3.NFS3_OK))
	x.item(m.Resok.DirAttributes)
	x.fixed(m.Resok.Cookieverf[:])
	for i := range m.entries {
		e := &m.entries[i]
		x.u32(1)
		x.u64(e.fileid)
		x.str(e.name)
		x.u64(e.cookie)
		x.item(e.attr)
		x.item(e.handle)
	}
	x.u32(0)
	x.u32(boolU32(m.Resok.Reply.Eof))
	return x.n, x.err
}

// readlinkOK is READLINK3resok with a byte-string target.
type readlinkOK struct {
	nfsv3.Readlink3res_NFS3_OK
}

func (m *readlinkOK) GetEncodedSizeBytes() int {
	return 4 + m.Resok.SymlinkAttributes.GetEncodedSizeBytes() + opaqueSize(len(m.Resok.Data))
}

func (m *readlinkOK) WriteTo(w io.Writer) (int64, error) {
	x := xdrWriter{w: w}
	x.u32(uint32(nfsv3.NFS3_OK))
	x.item(m.Resok.SymlinkAttributes)
	x.str(m.Resok.Data)
	return x.n, x.err
}
