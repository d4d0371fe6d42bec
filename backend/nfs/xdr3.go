package nfs

import (
	"fmt"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs/oncrpc"
)

// Hand-written XDR for the NFSv3 structures the client sends and reads
// (RFC 1813 section 2.6 and 3.3), on the oncrpc Encoder and Decoder. The
// go-xdr generated types are not used for these because they allocate per
// field, decode READDIRPLUS lists recursively and insist on ASCII file
// names; their constants (procedure numbers aside) are.

// NFSv3 procedure numbers (RFC 1813 section 3.3).
const (
	procGetattr     = 1
	procSetattr     = 2
	procLookup      = 3
	procAccess      = 4
	procReadlink    = 5
	procRead        = 6
	procWrite       = 7
	procCreate      = 8
	procMkdir       = 9
	procSymlink     = 10
	procMknod       = 11
	procRemove      = 12
	procRmdir       = 13
	procRename      = 14
	procLink        = 15
	procReaddirplus = 17
	procFsstat      = 18
	procFsinfo      = 19
	procPathconf    = 20
	procCommit      = 21
)

const (
	maxNameBytes = 4096 // bound for names and symlink targets we decode
	maxPathBytes = 1 << 16
)

func encodeFH(e *oncrpc.Encoder, h backend.Handle) { e.Opaque(h) }

func encodeDirop(e *oncrpc.Encoder, dir backend.Handle, name string) {
	encodeFH(e, dir)
	e.String(name)
}

func encodeTime(e *oncrpc.Encoder, t time.Time) {
	e.Uint32(uint32(t.Unix()))
	e.Uint32(uint32(t.Nanosecond()))
}

func encodeSetTime(e *oncrpc.Encoder, how backend.SetTime, t time.Time) {
	switch how {
	case backend.TimeServer:
		e.Int32(int32(nfsv3.SET_TO_SERVER_TIME))
	case backend.TimeClient:
		e.Int32(int32(nfsv3.SET_TO_CLIENT_TIME))
		encodeTime(e, t)
	default:
		e.Int32(int32(nfsv3.DONT_CHANGE))
	}
}

// encodeSattr encodes sattr3.
func encodeSattr(e *oncrpc.Encoder, sa backend.SetAttr) {
	set32 := func(p *uint32) {
		e.Bool(p != nil)
		if p != nil {
			e.Uint32(*p)
		}
	}
	set32(sa.Mode)
	set32(sa.UID)
	set32(sa.GID)
	e.Bool(sa.SizeBytes != nil)
	if sa.SizeBytes != nil {
		e.Uint64(*sa.SizeBytes)
	}
	encodeSetTime(e, sa.Atime, sa.AtimeVal)
	encodeSetTime(e, sa.Mtime, sa.MtimeVal)
}

func decodeTime(d *oncrpc.Decoder) time.Time {
	s := d.Uint32()
	ns := d.Uint32()
	if ns >= 1e9 {
		d.Fail(fmt.Errorf("%w: nfstime3 nseconds %d", oncrpc.ErrGarbageReply, ns))
	}
	return time.Unix(int64(s), int64(ns))
}

// decodeFattr decodes fattr3.
func decodeFattr(d *oncrpc.Decoder) backend.Attr {
	var a backend.Attr
	t := d.Uint32()
	if d.Err() == nil && (t < uint32(nfsv3.NF3REG) || t > uint32(nfsv3.NF3FIFO)) {
		d.Fail(fmt.Errorf("%w: ftype3 %d", oncrpc.ErrGarbageReply, t))
	}
	a.Type = backend.FileType(t) // backend's FileType follows ftype3
	a.Mode = d.Uint32() & 07777
	a.Nlink = d.Uint32()
	a.UID = d.Uint32()
	a.GID = d.Uint32()
	a.SizeBytes = d.Uint64()
	a.UsedBytes = d.Uint64()
	a.RdevMajor = d.Uint32()
	a.RdevMinor = d.Uint32()
	a.FSID = d.Uint64()
	a.FileID = d.Uint64()
	a.Atime = decodeTime(d)
	a.Mtime = decodeTime(d)
	a.Ctime = decodeTime(d)
	return a
}

// decodePostOpAttr decodes post_op_attr.
func decodePostOpAttr(d *oncrpc.Decoder) (backend.Attr, bool) {
	if !d.Bool() {
		return backend.Attr{}, false
	}
	return decodeFattr(d), true
}

// decodeWcc decodes wcc_data and returns the after attributes.
func decodeWcc(d *oncrpc.Decoder) (backend.Attr, bool) {
	if d.Bool() { // pre_op_attr: size, mtime, ctime
		d.Uint64()
		decodeTime(d)
		decodeTime(d)
	}
	return decodePostOpAttr(d)
}

// decodePostOpFH decodes post_op_fh3.
func decodePostOpFH(d *oncrpc.Decoder) (backend.Handle, bool) {
	if !d.Bool() {
		return nil, false
	}
	return decodeFH(d), true
}

func decodeFH(d *oncrpc.Decoder) backend.Handle {
	return backend.Handle(d.Opaque(nfsv3.NFS3_FHSIZE))
}

// decodeStatus reads nfsstat3; a status other than NFS3_OK becomes a
// *StatusError (the rest of the reply, the resfail arm, is skipped).
func decodeStatus(d *oncrpc.Decoder) error {
	s := nfsv3.Nfsstat3(d.Int32())
	if d.Err() != nil || s == nfsv3.NFS3_OK {
		return nil
	}
	return &StatusError{Status: s}
}

// newObjResult is what CREATE, MKDIR, SYMLINK and MKNOD return.
type newObjResult struct {
	h       backend.Handle
	hasH    bool
	attr    backend.Attr
	hasAttr bool
}

func (r *newObjResult) decode(d *oncrpc.Decoder) error {
	if err := decodeStatus(d); err != nil {
		return err
	}
	r.h, r.hasH = decodePostOpFH(d)
	r.attr, r.hasAttr = decodePostOpAttr(d)
	decodeWcc(d)
	return nil
}
