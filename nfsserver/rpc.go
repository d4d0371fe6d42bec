package nfsserver

// ONC RPC over TCP (RFC 5531): record marking, the call header, credentials,
// rejections, and the bounded per-connection pipeline.
//
// Lock order: conn.writeMu is a leaf (held only around one write or
// writev). Server.mu (connection set, see server.go) and mountTable.mu are
// leaves too; no goroutine holds two of these locks at once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/mount"
	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
	"github.com/nascache/nascache/cachefs"
	"github.com/rs/zerolog"
)

const (
	recordMarkBytes = 4
	lastFragmentBit = 1 << 31
	// maxIOBytes is rtmax = wtmax = rtpref = wtpref.
	maxIOBytes = 1 << 20
	// maxRecordBytes bounds one call record: a full WRITE plus headers
	// (call header with two 400-byte auth bodies, handle, arguments).
	maxRecordBytes = maxIOBytes + 4096
	// smallBufBytes is the size class of buffers for everything but
	// READ replies and WRITE calls.
	smallBufBytes = 64 << 10
	// maxAuthSysGIDs and maxMachineNameBytes are AUTH_SYS's limits.
	maxAuthSysGIDs      = 16
	maxMachineNameBytes = 255
)

// Program numbers served.
const (
	progPortmap = 100000
	progNFS     = nfsv3.NFS_PROGRAM_PROGRAM_NUMBER
	progMount   = mount.MOUNT_PROGRAM_PROGRAM_NUMBER
)

// service is the shape of go-xdr's generated program dispatchers.
type service func(ctx context.Context, vers, proc uint32, r io.ReadCloser, newReturnValue func(int) io.Writer) (rpcv2.AcceptedReplyData, error)

// callInfo is what the RPC layer learnt about a call: who sent it.
type callInfo struct {
	peer netip.Addr
	// cred are the AUTH_SYS credentials, before any export's squash.
	cred cachefs.Cred
	// anonymous is set for AUTH_NONE: the export's anonymous user.
	anonymous bool
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context, ci *callInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// callInfoFrom returns the caller of ctx; a context without one (only in
// misuse) is an anonymous caller from no address, which no client rule
// admits.
func callInfoFrom(ctx context.Context) *callInfo {
	if ci, ok := ctx.Value(callInfoKey{}).(*callInfo); ok {
		return ci
	}
	return &callInfo{anonymous: true}
}

// buffer is a pooled byte slice. Buffers come in two size classes so a
// GETATTR never pins a 1 MiB buffer.
type buffer struct {
	b []byte
}

// bufferPool recycles record and reply buffers. WRITE calls of 1 MiB are
// the case the large class exists for; READ replies send their data from
// the FS's buffer (read.go) and only their head comes from here.
type bufferPool struct {
	small, large sync.Pool
}

func (p *bufferPool) get(n int) *buffer {
	var b *buffer
	switch {
	case n <= smallBufBytes:
		if v, ok := p.small.Get().(*buffer); ok {
			b = v
		} else {
			b = &buffer{b: make([]byte, 0, smallBufBytes)}
		}
	case n <= maxRecordBytes+recordMarkBytes+512:
		if v, ok := p.large.Get().(*buffer); ok {
			b = v
		} else {
			b = &buffer{b: make([]byte, 0, maxRecordBytes+recordMarkBytes+512)}
		}
	default:
		return &buffer{b: make([]byte, n)}
	}
	b.b = b.b[:n]
	return b
}

func (p *bufferPool) put(b *buffer) {
	if b == nil {
		return
	}
	b.b = b.b[:0]
	switch cap(b.b) {
	case smallBufBytes:
		p.small.Put(b)
	case maxRecordBytes + recordMarkBytes + 512:
		p.large.Put(b)
	}
}

// readRecord reads one RPC record (all its fragments) from r into a pooled
// buffer. A record over maxBytes gives ErrRecordTooLarge: the stream cannot
// be resynchronised, so the caller drops the connection.
func readRecord(r io.Reader, pool *bufferPool, maxBytes int) (*buffer, error) {
	buf := pool.get(smallBufBytes)
	n := 0
	for {
		var mark [recordMarkBytes]byte
		if _, err := io.ReadFull(r, mark[:]); err != nil {
			pool.put(buf)
			if errors.Is(err, io.EOF) && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		m := binary.BigEndian.Uint32(mark[:])
		frag := int(m &^ lastFragmentBit)
		if n+frag > maxBytes {
			pool.put(buf)
			return nil, fmt.Errorf("read record of more than %d bytes: %w", n+frag, ErrRecordTooLarge)
		}
		if n+frag > cap(buf.b) {
			bigger := pool.get(n + frag)
			copy(bigger.b, buf.b[:n])
			pool.put(buf)
			buf = bigger
		}
		buf.b = buf.b[:n+frag]
		if _, err := io.ReadFull(r, buf.b[n:n+frag]); err != nil {
			pool.put(buf)
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n += frag
		if m&lastFragmentBit != 0 {
			buf.b = buf.b[:n]
			return buf, nil
		}
	}
}

// argReader is the io.ReadCloser the generated dispatchers read from.
type argReader struct{ *bytes.Reader }

func (argReader) Close() error { return nil }

// reply is the outcome of one call: the bytes to send (record mark
// included) and labels for metrics. The record is out, then tail, then
// pad[:padLen] (tail is the data of a READ, sent where it lies).
type reply struct {
	buf     *buffer
	out     []byte
	tail    []byte
	pad     [3]byte // always zero: the XDR padding after tail
	padLen  int
	release func() // called once the reply (and tail) is written; may be nil
	// slots, when set, is the connection's in-flight semaphore: the
	// writer frees the call's slot once the reply is written, so queued
	// replies count against MaxInFlightPerConn and a client that does not
	// read its replies cannot make the server queue without bound.
	slots     chan struct{}
	program   string
	procedure string
	status    string
}

// encodable is a result the generated code can encode.
type encodable interface {
	io.WriterTo
	GetEncodedSizeBytes() int
}

// rpcHandler decodes calls and produces replies. It is shared by every
// connection and safe for concurrent use.
type rpcHandler struct {
	nfs     service
	mount   service
	nfsProg *nfsProgram
	portmap *portmapper // nil: program 100000 is not served on this port
	pool    *bufferPool
	log     rpcLog
}

// handle processes one call record and returns the reply to send, or nil
// when the record is not a well-formed call (it is dropped, as knfsd does).
func (h *rpcHandler) handle(ctx context.Context, peer netip.Addr, rec []byte) *reply {
	cb, argsOff, isCall, err := parseCall(rec)
	if err != nil {
		h.log.debug("drop undecodable rpc message", peer, err)
		return nil
	}
	if !isCall {
		h.log.debug("drop rpc message that is not a call", peer, nil)
		return nil
	}
	rp := &reply{program: programName(cb.prog), procedure: procedureName(cb.prog, cb.vers, cb.proc)}
	if cb.rpcvers != 2 {
		rp.status = "RPC_MISMATCH"
		var rej rpcv2.RejectedReply_RPC_MISMATCH
		rej.MismatchInfo.Low, rej.MismatchInfo.High = 2, 2
		h.denied(rp, cb.xid, &rej)
		return rp
	}
	ci := &callInfo{peer: peer}
	switch rpcv2.AuthFlavor(cb.credFlavor) {
	case rpcv2.AUTH_SYS:
		cred, err := parseAuthSys(cb.credBody)
		if err != nil {
			h.log.debug("bad AUTH_SYS credentials", peer, err)
			rp.status = "AUTH_BADCRED"
			h.denied(rp, cb.xid, &rpcv2.RejectedReply_AUTH_ERROR{Stat: rpcv2.AUTH_BADCRED})
			return rp
		}
		ci.cred = cred
	case rpcv2.AUTH_NONE:
		ci.anonymous = true
	default:
		rp.status = "AUTH_TOOWEAK"
		h.denied(rp, cb.xid, &rpcv2.RejectedReply_AUTH_ERROR{Stat: rpcv2.AUTH_TOOWEAK})
		return rp
	}
	ctx = withCallInfo(ctx, ci)
	r := bytes.NewReader(rec[argsOff:])
	args := argReader{r}
	switch {
	case h.nfsProg != nil && cb.prog == progNFS && cb.vers == 3:
		res, handled, err := fastProc(h.nfsProg, ctx, cb.proc, rec[argsOff:])
		if !handled {
			res, handled, err = nameProc(h.nfsProg, ctx, cb.proc, r)
		}
		switch {
		case handled && err != nil:
			h.garbage(rp, cb.xid, err, peer)
			return rp
		case handled:
			h.success(rp, cb.xid, res)
			return rp
		}
		h.dispatch(ctx, rp, cb.xid, h.nfs, cb.vers, cb.proc, args, peer)
	case h.nfsProg != nil && cb.prog == progMount && cb.vers == 3:
		h.dispatch(ctx, rp, cb.xid, h.mount, cb.vers, cb.proc, args, peer)
	case h.nfsProg != nil && (cb.prog == progNFS || cb.prog == progMount):
		var d rpcv2.AcceptedReplyData_PROG_MISMATCH
		d.MismatchInfo.Low, d.MismatchInfo.High = 3, 3
		h.accepted(rp, cb.xid, &d)
	case cb.prog == progPortmap && h.portmap != nil:
		h.portmap.handle(rp, h, peer, cb.xid, cb.vers, cb.proc, r)
	default:
		h.accepted(rp, cb.xid, &rpcv2.AcceptedReplyData_default{Stat: rpcv2.PROG_UNAVAIL})
	}
	return rp
}

// handleSafely is handle for one call of a connection: a panic (a broken
// invariant somewhere below) fails that call with SYSTEM_ERR and is
// logged with its stack, instead of ending the process and with it every
// client's mount.
func (h *rpcHandler) handleSafely(ctx context.Context, peer netip.Addr, rec []byte) (rp *reply) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		h.log.Error().Str("peer", peer.String()).Interface("panic", v).Bytes("stack", debug.Stack()).
			Msg("panic serving an rpc call; replying SYSTEM_ERR")
		rp = nil
		if len(rec) >= 4 {
			rp = &reply{program: "unknown", procedure: "unknown", status: "SYSTEM_ERR"}
			h.accepted(rp, binary.BigEndian.Uint32(rec), &rpcv2.AcceptedReplyData_default{Stat: rpcv2.SYSTEM_ERR})
		}
	}()
	return h.handle(ctx, peer, rec)
}

// parseAuthSys decodes an AUTH_SYS credential body (RFC 5531 appendix A):
// stamp, machinename<255>, uid, gid, gids<16>. It is decoded by hand
// because go-xdr reads machinename as ASCII only, and a host name is no
// reason to refuse a call.
func parseAuthSys(body []byte) (cachefs.Cred, error) {
	x := xdrBytes{b: body}
	var cred cachefs.Cred
	x.u32()                       // stamp
	x.opaque(maxMachineNameBytes) // machinename
	cred.UID = x.u32()
	cred.GID = x.u32()
	n := x.u32()
	var err error
	switch {
	case x.err != nil:
		err = x.err
	case n > maxAuthSysGIDs:
		err = fmt.Errorf("%d gids, over %d", n, maxAuthSysGIDs)
	case n > 0:
		cred.GIDs = make([]uint32, n)
		for i := range cred.GIDs {
			cred.GIDs[i] = x.u32()
		}
		err = x.err
	}
	if err == nil && x.off != len(body) {
		err = fmt.Errorf("%d trailing bytes", len(body)-x.off)
	}
	if err != nil {
		return cachefs.Cred{}, fmt.Errorf("decode AUTH_SYS: %w", err)
	}
	return cred, nil
}

// dispatch runs a generated program dispatcher and turns its outcome into
// a reply. Our program methods never return an error, so an error from
// the dispatcher before it asked for a result buffer is a decoding failure
// of the arguments (GARBAGE_ARGS); after, it is an encoding failure
// (SYSTEM_ERR, logged).
func (h *rpcHandler) dispatch(ctx context.Context, rp *reply, xid uint32, svc service, vers, proc uint32, args argReader, peer netip.Addr) {
	hdr := successHeader(xid)
	start := recordMarkBytes + hdr.GetEncodedSizeBytes()
	var (
		buf *buffer
		w   *bytes.Buffer
	)
	data, err := svc(ctx, vers, proc, args, func(n int) io.Writer {
		buf = h.pool.get(start + n)
		w = bytes.NewBuffer(buf.b[:start])
		return w
	})
	switch {
	case err != nil && buf == nil:
		h.garbage(rp, xid, err, peer)
	case err != nil:
		h.pool.put(buf)
		h.log.error("encode reply", rp.procedure, err)
		rp.status = "SYSTEM_ERR"
		h.accepted(rp, xid, &rpcv2.AcceptedReplyData_default{Stat: rpcv2.SYSTEM_ERR})
	case data.GetStat() != rpcv2.SUCCESS:
		h.pool.put(buf)
		h.accepted(rp, xid, data)
	case buf == nil:
		rp.status = "OK"
		h.accepted(rp, xid, data)
	default:
		h.finish(rp, buf, w.Bytes(), hdr, start)
	}
}

// success encodes res as the result of an accepted call. The tail of a
// tailed result is not copied: it goes into rp.tail.
func (h *rpcHandler) success(rp *reply, xid uint32, res encodable) {
	hdr := successHeader(xid)
	start := recordMarkBytes + hdr.GetEncodedSizeBytes()
	buf := h.pool.get(start + res.GetEncodedSizeBytes())
	w := bytes.NewBuffer(buf.b[:start])
	if _, err := res.WriteTo(w); err != nil {
		h.pool.put(buf)
		h.log.error("encode reply", rp.procedure, err)
		rp.status = "SYSTEM_ERR"
		h.accepted(rp, xid, &rpcv2.AcceptedReplyData_default{Stat: rpcv2.SYSTEM_ERR})
		return
	}
	if t, ok := res.(*readOK); ok {
		rp.release = t.release
	}
	if t, ok := res.(tailed); ok {
		rp.tail = t.tail()
		rp.padLen = padBytes(len(rp.tail))
	}
	h.finish(rp, buf, w.Bytes(), hdr, start)
}

// finish writes the header and record mark in front of the encoded
// results in out (which is buf.b unless the result outgrew it); the
// record's length counts rp.tail and its padding.
func (h *rpcHandler) finish(rp *reply, buf *buffer, out []byte, hdr *rpcv2.RpcMsg, start int) {
	if _, err := hdr.WriteTo(bytes.NewBuffer(out[recordMarkBytes:recordMarkBytes])); err != nil {
		panic(fmt.Sprintf("nfsserver: encode fixed reply header: %v", err))
	}
	binary.BigEndian.PutUint32(out, uint32(len(out)-recordMarkBytes+len(rp.tail)+rp.padLen)|lastFragmentBit)
	rp.buf, rp.out = buf, out
	if rp.status == "" {
		rp.status = "OK"
		// Every NFS and MOUNT result with a body starts with its status.
		if len(out) >= start+4 && rp.program != "mount" {
			rp.status = statusName(nfsv3.Nfsstat3(binary.BigEndian.Uint32(out[start:])))
		} else if len(out) >= start+4 && rp.procedure == "MNT" {
			rp.status = mountStatusName(mount.Mountstat3(binary.BigEndian.Uint32(out[start:])))
		}
	}
}

func successHeader(xid uint32) *rpcv2.RpcMsg {
	return &rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: &rpcv2.ReplyBody_MSG_ACCEPTED{
		Areply: rpcv2.AcceptedReply{
			Verf:      rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE},
			ReplyData: &rpcv2.AcceptedReplyData_SUCCESS{},
		},
	}}}
}

func (h *rpcHandler) garbage(rp *reply, xid uint32, err error, peer netip.Addr) {
	h.log.debug("undecodable arguments of "+rp.procedure, peer, err)
	rp.status = "GARBAGE_ARGS"
	h.accepted(rp, xid, &rpcv2.AcceptedReplyData_default{Stat: rpcv2.GARBAGE_ARGS})
}

// accepted builds a reply with accept_stat data and no results.
func (h *rpcHandler) accepted(rp *reply, xid uint32, data rpcv2.AcceptedReplyData) {
	if rp.status == "" {
		rp.status = acceptStatName(data.GetStat())
	}
	h.small(rp, &rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: &rpcv2.ReplyBody_MSG_ACCEPTED{
		Areply: rpcv2.AcceptedReply{Verf: rpcv2.OpaqueAuth{Flavor: rpcv2.AUTH_NONE}, ReplyData: data},
	}}})
}

// denied builds a MSG_DENIED reply.
func (h *rpcHandler) denied(rp *reply, xid uint32, rej rpcv2.RejectedReply) {
	h.small(rp, &rpcv2.RpcMsg{Xid: xid, Body: &rpcv2.RpcMsgBody_REPLY{Rbody: &rpcv2.ReplyBody_MSG_DENIED{Rreply: rej}}})
}

func (h *rpcHandler) small(rp *reply, msg *rpcv2.RpcMsg) {
	n := msg.GetEncodedSizeBytes()
	buf := h.pool.get(recordMarkBytes + n)
	w := bytes.NewBuffer(buf.b[:recordMarkBytes])
	if _, err := msg.WriteTo(w); err != nil {
		panic(fmt.Sprintf("nfsserver: encode rpc reply: %v", err))
	}
	out := w.Bytes()
	binary.BigEndian.PutUint32(out, uint32(len(out)-recordMarkBytes)|lastFragmentBit)
	rp.buf, rp.out = buf, out
}

func acceptStatName(s rpcv2.AcceptStat) string {
	switch s {
	case rpcv2.SUCCESS:
		return "OK"
	case rpcv2.PROG_UNAVAIL:
		return "PROG_UNAVAIL"
	case rpcv2.PROG_MISMATCH:
		return "PROG_MISMATCH"
	case rpcv2.PROC_UNAVAIL:
		return "PROC_UNAVAIL"
	case rpcv2.GARBAGE_ARGS:
		return "GARBAGE_ARGS"
	case rpcv2.SYSTEM_ERR:
		return "SYSTEM_ERR"
	}
	return fmt.Sprintf("ACCEPT_%d", s)
}

// conn is one client TCP connection.
type conn struct {
	nc   net.Conn
	peer netip.Addr

	// mu guards queue, spare and writing: the replies waiting to be
	// written, and whether a goroutine is writing them.
	mu      sync.Mutex
	queue   []*reply
	spare   []*reply // the last written batch's slice, for reuse
	writing bool
	bufs    net.Buffers // the writer's iovecs; only the writer uses it
}

// serveConn reads calls from c until the connection fails or ctx is
// cancelled, running up to MaxInFlightPerConn of them at once, and returns
// after every call it started has finished.
//
// Calls run on worker goroutines of the connection, started as needed up
// to MaxInFlightPerConn and kept until the connection ends: a fresh
// goroutine per call would grow its stack anew every time (profiles of
// GETATTR/LOOKUP floods showed a sixth of the CPU in stack copying).
func (s *Server) serveConn(ctx context.Context, c *conn, h *rpcHandler) {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Calls still running when the connection ends are cancelled: their
	// replies could not be delivered. (Deferred calls run in reverse, so
	// cancel comes before the wait.)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, s.cfg.MaxInFlightPerConn)
	// work hands a record to an idle worker; closed when the read loop
	// ends, which stops the workers.
	work := make(chan *buffer)
	defer close(work)
	workers := 0
	serve := func(rec *buffer) {
		start := time.Now()
		rp := h.handleSafely(ctx, c.peer, rec.b)
		h.pool.put(rec)
		if rp == nil {
			<-slots
			return
		}
		s.metrics.observe(rp, time.Since(start))
		rp.slots = slots // freed by the writer
		c.send(s, h, rp)
	}
	br := bufio.NewReaderSize(c.nc, smallBufBytes)
	for {
		// Take a slot before reading, so a client flooding calls is
		// held back by TCP flow control rather than by memory.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		rec, err := readRecord(br, h.pool, maxRecordBytes)
		if err != nil {
			<-slots
			switch {
			case errors.Is(err, ErrRecordTooLarge):
				s.log.Warn().Str("peer", c.peer.String()).Err(err).Msg("closing connection: record too large")
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), ctx.Err() != nil:
			default:
				s.log.Debug().Str("peer", c.peer.String()).Err(err).Msg("connection read failed")
			}
			return
		}
		s.metrics.bytesRead.Add(float64(len(rec.b) + recordMarkBytes))
		select {
		case work <- rec: // an idle worker took it
			continue
		default:
		}
		if workers == cap(slots) {
			// Every worker exists; one is between calls (this call
			// holds a slot, so at most cap-1 calls run).
			work <- rec
			continue
		}
		workers++
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(rec)
			for rec := range work {
				serve(rec)
			}
		}()
	}
}

// send queues one reply and, unless another goroutine is writing the
// connection's replies, writes everything queued: replies that became
// ready while a write was under way go out together in one writev. A
// reply's buffers are released once it is written. A failed write closes
// the connection, which ends the read loop; the replies still queued are
// dropped (released). Either way each reply's slot is freed after its
// bytes were handed to the kernel (or dropped).
func (c *conn) send(s *Server, h *rpcHandler, rp *reply) {
	c.mu.Lock()
	c.queue = append(c.queue, rp)
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	for len(c.queue) > 0 {
		batch := c.queue
		c.queue, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		c.writeBatch(s, h, batch)
		clear(batch)
		c.mu.Lock()
		c.spare = batch[:0]
	}
	c.writing = false
	c.mu.Unlock()
}

// writeBatch writes replies in order with one writev (the kernel may
// take several for a large batch) and releases them.
func (c *conn) writeBatch(s *Server, h *rpcHandler, batch []*reply) {
	bufs := c.bufs[:0]
	for _, rp := range batch {
		bufs = append(bufs, rp.out)
		if len(rp.tail) > 0 {
			bufs = append(bufs, rp.tail, rp.pad[:rp.padLen])
		}
	}
	keep := bufs // WriteTo consumes bufs; keep the array for the next batch
	var n int64
	var err error
	if len(bufs) == 1 {
		var k int
		k, err = c.nc.Write(bufs[0])
		n = int64(k)
	} else {
		n, err = bufs.WriteTo(c.nc)
	}
	clear(keep)
	c.bufs = keep[:0]
	if err != nil {
		c.nc.Close()
	} else {
		s.metrics.bytesWritten.Add(float64(n))
	}
	for _, rp := range batch {
		if rp.release != nil {
			rp.release() // the tail has been written: its buffer may be reused
		}
		h.pool.put(rp.buf)
		if rp.slots != nil {
			<-rp.slots
		}
	}
}

// logger adds the few structured log lines of the RPC layer.
type rpcLog struct{ zerolog.Logger }

func (l rpcLog) debug(msg string, peer netip.Addr, err error) {
	l.Debug().Str("peer", peer.String()).Err(err).Msg(msg)
}

func (l rpcLog) error(msg, procedure string, err error) {
	l.Error().Str("procedure", procedure).Err(err).Msg(msg)
}
