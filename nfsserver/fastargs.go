package nfsserver

// Allocation-free decoding of the RPC call header and of the arguments of
// the procedures a data loader sends most (GETATTR, ACCESS, LOOKUP, READ).
//
// go-xdr's generated decoders read every variable-length opaque through a
// fresh bytes.Buffer (at least 512 bytes each): the credential and
// verifier bodies of every call and the file handle of every argument. A
// profile of warm small-file reads had a third of the server's allocations
// there, and the garbage collector's cost with them. Here those fields are
// slices of the call record itself, which lives until the call's reply is
// built (handle returns before the record goes back to its pool), and
// nothing they name is kept beyond the call: handles are decoded to
// NodeIDs, credentials to cachefs.Cred, names copied into strings.
//
// The decoders accept exactly what the generated ones accept: the same
// limits (opaque_auth bodies of at most 400 bytes, handles of at most
// NFS3_FHSIZE, names of at most maxNameDecodeBytes), the same big-endian
// layout and zero 4-byte padding; bytes after the arguments are ignored, as
// the generated service ignores them.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
)

// errShortXDR is a call or argument list that ends early or declares an
// opaque longer than its limit.
var errShortXDR = errors.New("nfsserver: truncated or oversized XDR item")

// errBadPadding is XDR padding that is not zero (go-xdr refuses it too).
var errBadPadding = errors.New("nfsserver: non-zero XDR padding")

// maxAuthBodyBytes is the limit of an opaque_auth body (RFC 5531).
const maxAuthBodyBytes = 400

// procs decoded here (besides procLookup and procRead).
const (
	procGetattr = 1
	procAccess  = 4
)

// xdrBytes decodes XDR items from a byte slice; the first failure sticks.
type xdrBytes struct {
	b   []byte
	off int
	err error
}

func (x *xdrBytes) u32() uint32 {
	if x.err != nil || len(x.b)-x.off < 4 {
		x.err = errShortXDR
		return 0
	}
	v := binary.BigEndian.Uint32(x.b[x.off:])
	x.off += 4
	return v
}

func (x *xdrBytes) u64() uint64 {
	if x.err != nil || len(x.b)-x.off < 8 {
		x.err = errShortXDR
		return 0
	}
	v := binary.BigEndian.Uint64(x.b[x.off:])
	x.off += 8
	return v
}

// opaque returns a variable-length opaque of at most max bytes, as a
// slice of the input (padding skipped).
func (x *xdrBytes) opaque(max uint32) []byte {
	n := x.u32()
	if x.err != nil {
		return nil
	}
	padded := (uint64(n) + 3) &^ 3
	if n > max || uint64(len(x.b)-x.off) < padded {
		x.err = errShortXDR
		return nil
	}
	v := x.b[x.off : x.off+int(n) : x.off+int(n)]
	for _, c := range x.b[x.off+int(n) : x.off+int(padded)] {
		if c != 0 {
			x.err = errBadPadding
			return nil
		}
	}
	x.off += int(padded)
	return v
}

// callHeader is the call_body of an RPC message (RFC 5531 section 9).
type callHeader struct {
	xid, rpcvers, prog, vers, proc uint32
	credFlavor                     uint32
	credBody                       []byte // a slice of the record
}

// parseCall decodes the header of a call record and returns it and the
// offset of the procedure's arguments. ok is false for a record that is
// not a well-formed call (it is dropped, as before).
func parseCall(rec []byte) (h callHeader, argsOff int, isCall bool, err error) {
	x := xdrBytes{b: rec}
	h.xid = x.u32()
	if mtype := x.u32(); x.err == nil && mtype != 0 { // CALL = 0
		return h, 0, false, nil
	}
	h.rpcvers = x.u32()
	h.prog = x.u32()
	h.vers = x.u32()
	h.proc = x.u32()
	h.credFlavor = x.u32()
	h.credBody = x.opaque(maxAuthBodyBytes)
	x.u32()                    // verifier flavor
	x.opaque(maxAuthBodyBytes) // verifier body
	if x.err != nil {
		return h, 0, false, fmt.Errorf("decode call header: %w", x.err)
	}
	return h, x.off, true, nil
}

// fastProc decodes the arguments of GETATTR, ACCESS, LOOKUP and READ from
// args and runs the procedure. handled is false for other procedures.
func fastProc(p *nfsProgram, ctx context.Context, proc uint32, args []byte) (res encodable, handled bool, err error) {
	switch proc {
	case procGetattr:
		a, err := decodeGetattr(args)
		if err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Getattr(ctx, &a)
	case procAccess:
		a, err := decodeAccess(args)
		if err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Access(ctx, &a)
	case procLookup:
		a, err := decodeLookup(args)
		if err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Lookup(ctx, &a)
	case procRead:
		a, err := decodeRead(args)
		if err != nil {
			return nil, true, err
		}
		res, _ = p.NfsV3Nfsproc3Read(ctx, &a) // the program never fails a call
	default:
		return nil, false, nil
	}
	return res, true, nil
}

func decodeGetattr(b []byte) (nfsv3.Getattr3args, error) {
	x := xdrBytes{b: b}
	var a nfsv3.Getattr3args
	a.Object.Data = x.opaque(nfsv3.NFS3_FHSIZE)
	return a, x.err
}

func decodeAccess(b []byte) (nfsv3.Access3args, error) {
	x := xdrBytes{b: b}
	var a nfsv3.Access3args
	a.Object.Data = x.opaque(nfsv3.NFS3_FHSIZE)
	a.Access = x.u32()
	return a, x.err
}

// decodeLookup decodes diropargs3 with the name as bytes, refusing NUL
// and '/' like readDirop.
func decodeLookup(b []byte) (nfsv3.Lookup3args, error) {
	x := xdrBytes{b: b}
	var a nfsv3.Lookup3args
	a.What.Dir.Data = x.opaque(nfsv3.NFS3_FHSIZE)
	name := x.opaque(maxNameDecodeBytes)
	if x.err != nil {
		return a, x.err
	}
	if bytes.IndexByte(name, 0) >= 0 || bytes.IndexByte(name, '/') >= 0 {
		return a, fmt.Errorf("decode name %q: %w", name, errBadName)
	}
	a.What.Name = string(name)
	return a, nil
}

func decodeRead(b []byte) (nfsv3.Read3args, error) {
	x := xdrBytes{b: b}
	var a nfsv3.Read3args
	a.File.Data = x.opaque(nfsv3.NFS3_FHSIZE)
	a.Offset = x.u64()
	a.Count = x.u32()
	return a, x.err
}
