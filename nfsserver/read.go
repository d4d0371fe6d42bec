package nfsserver

// READ replies are sent without copying the file data. The generated
// encoder would copy up to 1 MiB from the FS's buffer into a pooled reply
// buffer; instead the reply is built in two parts, the encoded head
// (RPC header, status, attributes, count, eof, data length) and the data
// slice itself, followed by its XDR padding, and conn.write sends them in
// one writev under the connection's write mutex, so the record stays one
// atomic write.
//
// This relies on the FS leaving ReadResult.Data untouched until the reply
// has been written (after the call returns, and possibly after other
// replies of the connection): cachefs hands out a fresh slice per READ;
// a cache that hands out shared memory must keep it pinned until then.

import (
	"context"
	"io"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
)

// procRead is NFSPROC3_READ.
const procRead = 6

// tailed is a result whose encoding (WriteTo, GetEncodedSizeBytes) stops
// before a final XDR opaque's bytes: tail returns them; the RPC layer
// sends them and their padding after the encoded part.
type tailed interface {
	encodable
	tail() []byte
}

// readOK is READ3resok whose data is sent as the tail of the record.
type readOK struct {
	nfsv3.Read3res_NFS3_OK
	// release hands the data's buffer back to the FS once the reply has
	// been written (cachefs.ReadResult.Release); may be nil.
	release func()
}

var _ tailed = (*readOK)(nil)

// readOKFixedBytes: status, count, eof and the data's length.
const readOKFixedBytes = 4 * 4

func (m *readOK) GetEncodedSizeBytes() int {
	return readOKFixedBytes + m.Resok.FileAttributes.GetEncodedSizeBytes()
}

func (m *readOK) WriteTo(w io.Writer) (int64, error) {
	x := xdrWriter{w: w}
	x.u32(uint32(nfsv3.NFS3_OK))
	x.item(m.Resok.FileAttributes)
	x.u32(m.Resok.Count)
	x.u32(boolU32(m.Resok.Eof))
	x.u32(uint32(len(m.Resok.Data)))
	return x.n, x.err
}

func (m *readOK) tail() []byte { return m.Resok.Data }

// readProc decodes READ arguments and runs the call; a successful result
// comes back as a readOK.
func readProc(p *nfsProgram, ctx context.Context, r io.Reader) (encodable, error) {
	var a nfsv3.Read3args
	if _, err := a.ReadFrom(r); err != nil {
		return nil, err
	}
	res, _ := p.NfsV3Nfsproc3Read(ctx, &a) // the program never fails a call
	return res, nil
}

// padBytes is the XDR padding after n bytes of opaque data.
func padBytes(n int) int { return (4 - n%4) % 4 }
