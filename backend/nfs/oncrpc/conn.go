package oncrpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// conn is one TCP connection with its table of outstanding calls. Calls
// write their requests themselves (one at a time, wsem); the connection's
// reader (readLoop, run by the slot goroutine) reads replies and hands each
// to its call by xid.
type conn struct {
	c  *Client
	nc net.Conn
	br *bufio.Reader

	// wsem is a one-slot semaphore held while a request is written, so
	// records never interleave; a channel so that waiting honours ctx.
	wsem        chan struct{}
	outstanding atomic.Int32 // calls registered and not yet returned
	replied     atomic.Bool  // a well-formed reply came on this conn
	lastRecv    atomic.Int64 // unix nanoseconds when the last record began

	mu sync.Mutex // guards pending and err
	// pending holds the calls sent or being sent and not yet claimed by
	// the reader; nil once the connection has failed.
	pending map[uint32]*call
	err     error // why the connection failed; set once
}

type call struct {
	req  *Request
	done chan error // buffered; receives the call's one result
}

func newConn(c *Client, nc net.Conn) *conn {
	return &conn{
		c:       c,
		nc:      nc,
		br:      bufio.NewReaderSize(nc, c.cfg.ReadBufferBytes),
		wsem:    make(chan struct{}, 1),
		pending: make(map[uint32]*call),
	}
}

// cause is why the connection failed, or nil while it works.
func (cn *conn) cause() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// lostErr is what a call on a failed connection returns.
func lostErr(cause error) error {
	if errors.Is(cause, ErrClosed) {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrConnLost, cause)
}

// fail marks the connection broken (the first cause wins), closes it, and
// fails every call still pending. The reader then exits.
func (cn *conn) fail(cause error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = cause
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	_ = cn.nc.Close() // the error of closing a connection we are dropping tells nothing
	err := lostErr(cause)
	for _, cl := range pending {
		cl.done <- err
	}
}

// forget removes xid from the table; false means the reader (or fail)
// already took it and will deliver a result.
func (cn *conn) forget(xid uint32) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if _, ok := cn.pending[xid]; ok {
		delete(cn.pending, xid)
		return true
	}
	return false
}

// claim takes xid's call out of the table for the reader.
func (cn *conn) claim(xid uint32) *call {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	cl, ok := cn.pending[xid]
	if ok {
		delete(cn.pending, xid)
	}
	return cl
}

func (cn *conn) call(ctx context.Context, req *Request) error {
	e := cn.c.getEncoder()
	defer cn.c.putEncoder(e)
	xid := cn.c.xid.Add(1)
	encodeCall(e, xid, req, cn.c.cfg.MachineName)
	body := int64(len(e.buf)) - 4 + int64(len(req.Payload)+len(padding(len(req.Payload))))
	if body > maxFragmentLen {
		return fmt.Errorf("%w: %d bytes", ErrArgsTooLarge, body)
	}
	binary.BigEndian.PutUint32(e.buf[:4], lastFragment|uint32(body))

	cl := &call{req: req, done: make(chan error, 1)}
	cn.mu.Lock()
	if cn.err != nil {
		cause := cn.err
		cn.mu.Unlock()
		return lostErr(cause)
	}
	cn.pending[xid] = cl
	cn.outstanding.Add(1)
	cn.mu.Unlock()
	defer cn.outstanding.Add(-1)

	select {
	case cn.wsem <- struct{}{}:
	case <-ctx.Done():
		if cn.forget(xid) {
			return ctx.Err()
		}
		return <-cl.done
	}
	err := cn.write(e.buf, req.Payload)
	<-cn.wsem
	if err != nil {
		// A partial record would desynchronise the stream: drop it.
		cn.fail(fmt.Errorf("write: %w", err))
	}
	return cn.wait(ctx, xid, cl)
}

// wait waits for cl's result. If the server stays silent (nothing at all
// received) for SilentTimeout after the call was sent, the connection is
// declared dead, which fails cl retryably.
func (cn *conn) wait(ctx context.Context, xid uint32, cl *call) error {
	var tc <-chan time.Time // nil (never ready) without a SilentTimeout
	silent := cn.c.cfg.SilentTimeout
	sent := time.Now()
	var t *time.Timer
	if silent > 0 {
		t = time.NewTimer(silent)
		defer t.Stop()
		tc = t.C
	}
	for {
		select {
		case err := <-cl.done:
			return err
		case <-ctx.Done():
			if cn.forget(xid) {
				return ctx.Err()
			}
			return <-cl.done
		case <-tc:
			heard := time.Unix(0, cn.lastRecv.Load())
			if heard.Before(sent) {
				heard = sent
			}
			quiet := time.Since(heard)
			if quiet >= silent {
				cn.fail(fmt.Errorf("nothing received from the server for %v", quiet.Round(time.Millisecond)))
				return <-cl.done
			}
			t.Reset(silent - quiet)
		}
	}
}

func (cn *conn) write(hdr, payload []byte) error {
	if d := cn.c.cfg.StallTimeout; d > 0 {
		if err := cn.nc.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return err
		}
	}
	if len(payload) == 0 {
		_, err := cn.nc.Write(hdr)
		return err
	}
	bufs := net.Buffers{hdr, payload, padding(len(payload))}
	_, err := bufs.WriteTo(cn.nc)
	return err
}

// encodeCall encodes the record mark placeholder, the call header and the
// arguments (rpc_msg with call_body, RFC 5531 section 9).
func encodeCall(e *Encoder, xid uint32, req *Request, machine string) {
	e.Uint32(0) // record mark, patched once the length is known
	e.Uint32(xid)
	e.Int32(int32(rpcv2.CALL))
	e.Uint32(2) // rpcvers
	e.Uint32(req.Prog)
	e.Uint32(req.Vers)
	e.Uint32(req.Proc)
	if a := req.Auth; a != nil {
		gids := a.GIDs
		if len(gids) > maxAuthGroups {
			gids = gids[:maxAuthGroups]
		}
		e.Int32(int32(rpcv2.AUTH_SYS))
		lenAt := e.Len()
		e.Uint32(0) // body length, patched below
		e.Uint32(0) // stamp
		e.String(machine)
		e.Uint32(a.UID)
		e.Uint32(a.GID)
		e.Uint32(uint32(len(gids)))
		for _, g := range gids {
			e.Uint32(g)
		}
		binary.BigEndian.PutUint32(e.buf[lenAt:], uint32(e.Len()-lenAt-4))
	} else {
		e.Int32(int32(rpcv2.AUTH_NONE))
		e.Uint32(0)
	}
	e.Int32(int32(rpcv2.AUTH_NONE)) // verifier
	e.Uint32(0)
	if req.Args != nil {
		req.Args(e)
	}
}

// readLoop reads replies until the connection fails, then returns with
// every pending call failed.
func (cn *conn) readLoop() {
	rr := &recordReader{br: cn.br, maxBytes: cn.c.cfg.MaxRecordBytes}
	d := &Decoder{r: rr}
	stall := cn.c.cfg.StallTimeout
	for {
		if err := rr.begin(); err != nil {
			cn.fail(err)
			return
		}
		cn.lastRecv.Store(time.Now().UnixNano())
		if stall > 0 {
			// The record has started: the rest must keep coming.
			if err := cn.nc.SetReadDeadline(time.Now().Add(stall)); err != nil {
				cn.fail(err)
				return
			}
		}
		d.err = nil
		xid := d.Uint32()
		mtype := d.Int32()
		if rr.err != nil {
			cn.fail(rr.err)
			return
		}
		var cl *call
		if d.err == nil && mtype == int32(rpcv2.REPLY) {
			cl = cn.claim(xid)
		}
		// A record with no call to go to (a reply to a call given up on,
		// a short or non-reply record) is skipped.
		if cl != nil {
			res := decodeReply(d, cl.req)
			if rr.err != nil {
				if errors.Is(rr.err, ErrReplyTooLarge) {
					cl.done <- rr.err
				} else {
					cl.done <- lostErr(rr.err)
				}
				cn.fail(rr.err)
				return
			}
			cn.replied.Store(true)
			cl.done <- res
		}
		if err := rr.drain(); err != nil {
			cn.fail(err)
			return
		}
		if stall > 0 {
			if err := cn.nc.SetReadDeadline(time.Time{}); err != nil {
				cn.fail(err)
				return
			}
		}
	}
}

// decodeReply decodes the reply header after xid and mtype (reply_body)
// and, on SUCCESS, the results through req.Reply.
func decodeReply(d *Decoder, req *Request) error {
	body, _, err := rpcv2.ReadReplyBody(d)
	if err != nil {
		return fmt.Errorf("%w: reply header: %w", ErrGarbageReply, err)
	}
	switch b := body.(type) {
	case *rpcv2.ReplyBody_MSG_ACCEPTED:
		switch data := b.Areply.ReplyData.(type) {
		case *rpcv2.AcceptedReplyData_SUCCESS:
			var res error
			if req.Reply != nil {
				res = req.Reply(d)
			}
			if d.err != nil {
				if errors.Is(d.err, ErrGarbageReply) {
					return d.err
				}
				return fmt.Errorf("%w: %w", ErrGarbageReply, d.err)
			}
			return res
		case *rpcv2.AcceptedReplyData_PROG_MISMATCH:
			return &MismatchError{Kind: ErrProgMismatch, Low: data.MismatchInfo.Low, High: data.MismatchInfo.High}
		case *rpcv2.AcceptedReplyData_default:
			switch data.Stat {
			case rpcv2.PROG_UNAVAIL:
				return ErrProgUnavail
			case rpcv2.PROC_UNAVAIL:
				return ErrProcUnavail
			case rpcv2.GARBAGE_ARGS:
				return ErrGarbageArgs
			case rpcv2.SYSTEM_ERR:
				return ErrSystemErr
			}
			return fmt.Errorf("%w: accept_stat %d", ErrGarbageReply, data.Stat)
		}
	case *rpcv2.ReplyBody_MSG_DENIED:
		switch r := b.Rreply.(type) {
		case *rpcv2.RejectedReply_RPC_MISMATCH:
			return &MismatchError{Kind: ErrRPCMismatch, Low: r.MismatchInfo.Low, High: r.MismatchInfo.High}
		case *rpcv2.RejectedReply_AUTH_ERROR:
			return &AuthError{Stat: r.Stat}
		}
	}
	return fmt.Errorf("%w: unexpected reply body %T", ErrGarbageReply, body)
}
