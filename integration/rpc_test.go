//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/buildbarn/go-xdr/pkg/runtime"
)

// Program versions and procedure numbers (RFC 1813).
const (
	mountV3      = 3
	mountProcMnt = 1
	nfsV3        = 3
	nfsProcGet   = 1 // GETATTR
)

// rpcClient speaks raw ONC RPC (RFC 5531) over one TCP connection, one call
// at a time, with AUTH_SYS credentials. It exists so that tests can send what
// no well-behaved client would: forged handles, handles of other exports.
type rpcClient struct {
	conn net.Conn
	r    *bufio.Reader
	xid  uint32
	cred []byte // encoded authsys_parms
}

// rpcTimeout bounds one call, so that a server that stops answering fails the
// test instead of hanging it.
const rpcTimeout = 30 * time.Second

func dialRPC(addr string, uid, gid uint32) (*rpcClient, error) {
	conn, err := net.DialTimeout("tcp", addr, rpcTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	var cred bytes.Buffer
	parms := rpcv2.AuthsysParms{Stamp: 1, Machinename: "integration", Uid: uid, Gid: gid, Gids: []uint32{gid}}
	if _, err := parms.WriteTo(&cred); err != nil {
		conn.Close()
		return nil, fmt.Errorf("encode authsys: %w", err)
	}
	return &rpcClient{conn: conn, r: bufio.NewReader(conn), xid: uint32(time.Now().UnixNano()), cred: cred.Bytes()}, nil
}

func (c *rpcClient) Close() error { return c.conn.Close() }

// rpcError is a call that the server did not accept with SUCCESS: a
// MSG_DENIED reply (RPC_MISMATCH, AUTH_ERROR) or an accept_stat other than
// SUCCESS (PROG_UNAVAIL, GARBAGE_ARGS, ...).
type rpcError struct{ what string }

func (e *rpcError) Error() string { return "rpc: " + e.what }

// call sends one CALL and returns the procedure's result bytes.
func (c *rpcClient) call(prog, vers, proc uint32, args io.WriterTo) ([]byte, error) {
	c.xid++
	xid := c.xid
	var body bytes.Buffer
	msg := rpcv2.RpcMsg{
		Xid: xid,
		Body: &rpcv2.RpcMsgBody_CALL{Cbody: rpcv2.CallBody{
			Rpcvers: 2, Prog: prog, Vers: vers, Proc: proc,
			Cred: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_SYS, Body: c.cred},
			Verf: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE, Body: []byte{}},
		}},
	}
	if _, err := msg.WriteTo(&body); err != nil {
		return nil, fmt.Errorf("encode call xid %d: %w", xid, err)
	}
	if _, err := args.WriteTo(&body); err != nil {
		return nil, fmt.Errorf("encode args xid %d: %w", xid, err)
	}
	// Record marking: one fragment, last-fragment bit set.
	rec := make([]byte, 4+body.Len())
	binary.BigEndian.PutUint32(rec, 0x80000000|uint32(body.Len()))
	copy(rec[4:], body.Bytes())
	if err := c.conn.SetDeadline(time.Now().Add(rpcTimeout)); err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(rec); err != nil {
		return nil, fmt.Errorf("send xid %d: %w", xid, err)
	}
	reply, err := c.readRecord()
	if err != nil {
		return nil, fmt.Errorf("reply to xid %d: %w", xid, err)
	}
	rd := bytes.NewReader(reply)
	var rmsg rpcv2.RpcMsg
	if _, err := rmsg.ReadFrom(rd); err != nil {
		return nil, fmt.Errorf("decode reply to xid %d: %w", xid, err)
	}
	if rmsg.Xid != xid {
		return nil, fmt.Errorf("reply xid %d, want %d", rmsg.Xid, xid)
	}
	rb, ok := rmsg.Body.(*rpcv2.RpcMsgBody_REPLY)
	if !ok {
		return nil, fmt.Errorf("xid %d: server sent a CALL", xid)
	}
	switch r := rb.Rbody.(type) {
	case *rpcv2.ReplyBody_MSG_ACCEPTED:
		if st := r.Areply.ReplyData.GetStat(); st != rpcv2.SUCCESS {
			return nil, &rpcError{what: fmt.Sprintf("accept_stat %d", st)}
		}
	case *rpcv2.ReplyBody_MSG_DENIED:
		if ae, ok := r.Rreply.(*rpcv2.RejectedReply_AUTH_ERROR); ok {
			return nil, &rpcError{what: fmt.Sprintf("MSG_DENIED AUTH_ERROR auth_stat %d", ae.Stat)}
		}
		return nil, &rpcError{what: fmt.Sprintf("MSG_DENIED reject_stat %d", r.Rreply.GetStat())}
	default:
		return nil, fmt.Errorf("xid %d: unknown reply body %T", xid, r)
	}
	return reply[len(reply)-rd.Len():], nil
}

// readRecord reads one record (all fragments) of at most 4 MiB.
func (c *rpcClient) readRecord() ([]byte, error) {
	var rec []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(rec)+n > 4<<20 {
			return nil, fmt.Errorf("record larger than 4 MiB")
		}
		frag := make([]byte, n)
		if _, err := io.ReadFull(c.r, frag); err != nil {
			return nil, err
		}
		rec = append(rec, frag...)
		if h&0x80000000 != 0 {
			return rec, nil
		}
	}
}

// writerFunc adapts a function to io.WriterTo.
type writerFunc func(w io.Writer) (int64, error)

func (f writerFunc) WriteTo(w io.Writer) (int64, error) { return f(w) }

// mnt calls MOUNTPROC3_MNT for path and returns the root handle, or the
// mount status when it is not MNT3_OK.
func (c *rpcClient) mnt(path string) ([]byte, mount.Mountstat3, error) {
	res, err := c.call(mount.MOUNT_PROGRAM_PROGRAM_NUMBER, mountV3, mountProcMnt, writerFunc(func(w io.Writer) (int64, error) {
		return runtime.WriteASCIIString(w, 1024, path)
	}))
	if err != nil {
		return nil, 0, err
	}
	mr, _, err := mount.ReadMountres3(bytes.NewReader(res))
	if err != nil {
		return nil, 0, fmt.Errorf("decode mountres3: %w", err)
	}
	ok, isOK := mr.(*mount.Mountres3_MNT3_OK)
	if !isOK {
		return nil, mr.GetFhsStatus(), nil
	}
	return ok.Mountinfo.Fhandle, mount.MNT3_OK, nil
}

// getattr calls NFSPROC3_GETATTR and returns its status (and the attributes
// when NFS3_OK).
func (c *rpcClient) getattr(fh []byte) (nfsv3.Nfsstat3, *nfsv3.Fattr3, error) {
	res, err := c.call(nfsv3.NFS_PROGRAM_PROGRAM_NUMBER, nfsV3, nfsProcGet, &nfsv3.Getattr3args{Object: nfsv3.NfsFh3{Data: fh}})
	if err != nil {
		return 0, nil, err
	}
	gr, _, err := nfsv3.ReadGetattr3res(bytes.NewReader(res))
	if err != nil {
		return 0, nil, fmt.Errorf("decode getattr3res: %w", err)
	}
	if ok, isOK := gr.(*nfsv3.Getattr3res_NFS3_OK); isOK {
		return nfsv3.NFS3_OK, &ok.Resok.ObjAttributes, nil
	}
	return gr.GetStatus(), nil, nil
}
