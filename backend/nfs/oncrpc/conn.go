package oncrpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/rpcv2"
)

// conn is one TCP connection with its table of outstanding calls. Calls
// queue their encoded requests and one of them at a time writes the
// queue (flush); the connection's reader (readLoop, run by the slot
// goroutine) reads replies and hands each to its call by xid; a watchdog
// (watch) declares the connection dead when the server goes silent.
type conn struct {
	c *Client
	// The transport: a TCP socket moved out of the runtime's poller
	// (sock), or, for other connections (Config.Dial in tests), nc.
	sock  *sock
	nc    net.Conn
	br    *readBuffer
	epoch time.Time // times below are monotonic nanoseconds since epoch

	outstanding atomic.Int32 // calls registered and not yet returned
	replied     atomic.Bool  // a well-formed reply came on this conn
	lastRecv    atomic.Int64 // when the last record began (since epoch)

	mu sync.Mutex // guards pending, err, queue, spare, writing, released, wakeAt and calls' sentAt
	// pending holds the calls queued, being sent or sent and not yet
	// claimed by the reader; nil once the connection has failed.
	pending map[uint32]*call
	err     error // why the connection failed; set once
	// queue holds the calls whose records wait to be written, in order;
	// spare is the writer's last batch, kept for reuse as the next queue.
	queue, spare []*call
	// writing is true while a caller is in flush; that caller writes
	// whatever is queued before it clears writing, so a call that finds
	// writing set only queues its record and waits for its reply.
	writing bool
	// released, when not nil, is closed once the writer is done with its
	// current batch; made on demand by a call that must wait for that.
	released chan struct{}

	// wakeAt is when the watchdog looks next (since epoch), so that a
	// call due before wakes it through poke.
	wakeAt int64
	poke   chan struct{} // buffered; see watch
	// expired is the watchdog's scratch list; only it uses it.
	expired []*call

	// iov is flush's scratch list of buffers; only the writer uses it.
	iov net.Buffers
	// ready holds replies decoded and not yet handed to their calls;
	// only the reader uses it (readLoop).
	ready []readyCall
}

// Call states, kept in call.state. A call's record is queued, then taken
// by a writer (sending) and then released: from then on the writer no
// longer reads the record or Request.Payload. A call taken out of the
// queue before any writer took it goes straight to released.
const (
	callQueued uint32 = iota
	callSending
	callReleased
)

// call is one Call in flight. Calls are pooled (Client.callPool): one is
// put back only when no other goroutine can touch it any more (it has
// left the table and the queue, is released, and its done channel is
// empty).
type call struct {
	req *Request
	xid uint32
	enc *Encoder // the encoded record; owned by the queue, then the writer
	// state is written under conn.mu and read either under it or, by the
	// call's own goroutine, atomically.
	state  atomic.Uint32
	sentAt int64 // when a writer took it (since conn.epoch); 0 before
	// deadline is when the watchdog fails the call (Request.Deadline,
	// since conn.epoch); 0: never.
	deadline int64
	done     chan error // buffered; receives the call's one result
}

// newConn makes a connection of nc, which it owns from then on (and
// closes on error).
func newConn(c *Client, nc net.Conn) (*conn, error) {
	cn := &conn{
		c:       c,
		epoch:   time.Now(),
		pending: make(map[uint32]*call),
		wakeAt:  math.MaxInt64,
		poke:    make(chan struct{}, 1),
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		s, err := detach(tc)
		if err != nil {
			return nil, err
		}
		cn.sock = s
		cn.br = newReadBuffer(nil, s, c.cfg.ReadBufferBytes)
	} else {
		cn.nc = nc
		cn.br = newReadBuffer(nc, nil, c.cfg.ReadBufferBytes)
	}
	return cn, nil
}

// now is the time since cn.epoch on the monotonic clock, so that a step
// of the wall clock cannot make the server look silent.
func (cn *conn) now() int64 { return int64(time.Since(cn.epoch)) }

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
// fails every call still pending. Records still queued are dropped unsent.
// The reader, the watchdog and any writer then stop.
func (cn *conn) fail(cause error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = cause
	pending := cn.pending
	cn.pending = nil
	for i, cl := range cn.queue {
		cl.state.Store(callReleased)
		cn.c.putEncoder(cl.enc)
		cl.enc = nil
		cn.queue[i] = nil
	}
	cn.queue = cn.queue[:0]
	cn.mu.Unlock()
	// Errors of closing a connection being dropped tell nothing. Closing
	// the sock wakes a reader or writer waiting in poll(2).
	if cn.sock != nil {
		_ = cn.sock.Close()
	} else {
		_ = cn.nc.Close()
	}
	err := lostErr(cause)
	for _, cl := range pending {
		cl.done <- err
	}
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
	xid := cn.c.xid.Add(1)
	encodeCall(e, xid, req, cn.c.cfg.MachineName)
	body := int64(len(e.buf)) - 4 + int64(len(req.Payload)+len(padding(len(req.Payload))))
	if body > maxFragmentLen {
		cn.c.putEncoder(e)
		return fmt.Errorf("%w: %d bytes", ErrArgsTooLarge, body)
	}
	binary.BigEndian.PutUint32(e.buf[:4], lastFragment|uint32(body))

	cl := cn.c.getCall()
	cl.req, cl.xid, cl.enc, cl.sentAt, cl.deadline = req, xid, e, 0, 0
	if !req.Deadline.IsZero() {
		cl.deadline = max(int64(req.Deadline.Sub(cn.epoch)), 1)
	}
	cl.state.Store(callQueued)
	cn.mu.Lock()
	if cn.err != nil {
		cause := cn.err
		cn.mu.Unlock()
		cn.c.putEncoder(e)
		cn.c.putCall(cl)
		return lostErr(cause)
	}
	cn.pending[xid] = cl
	// Wake the watchdog if this call can be due before it looks next:
	// at its deadline, or (it is not sent yet) SilentTimeout from now.
	due := cl.deadline
	if silent := int64(cn.c.cfg.SilentTimeout); silent > 0 && (due == 0 || cn.now()+silent < due) {
		due = cn.now() + silent
	}
	if due != 0 && due < cn.wakeAt {
		select {
		case cn.poke <- struct{}{}:
		default: // already poked
		}
	}
	cn.queue = append(cn.queue, cl)
	lead := !cn.writing
	cn.writing = true
	cn.outstanding.Add(1)
	cn.mu.Unlock()
	defer cn.outstanding.Add(-1)

	if lead {
		cn.flush()
	}
	return cn.wait(ctx, cl)
}

// flush writes the queue until it is empty, each batch with one writev,
// then clears cn.writing. Only the caller that set cn.writing runs it.
// New records may be queued while a batch is written; they go out with
// the next batch, so a caller never waits to write and no extra goroutine
// is woken to do it. The loop ends because each caller queues at most one
// record per reply it has received.
func (cn *conn) flush() {
	for {
		cn.mu.Lock()
		if len(cn.queue) == 0 || cn.err != nil {
			cn.writing = false
			cn.mu.Unlock()
			return
		}
		batch := cn.queue
		cn.queue = cn.spare[:0]
		cn.spare = nil
		now := cn.now()
		for _, cl := range batch {
			cl.state.Store(callSending)
			cl.sentAt = now
		}
		cn.mu.Unlock()

		err := cn.writeBatch(batch)
		for _, cl := range batch {
			cn.c.putEncoder(cl.enc)
			cl.enc = nil
		}

		cn.mu.Lock()
		for _, cl := range batch {
			cl.state.Store(callReleased)
		}
		if cn.released != nil {
			close(cn.released)
			cn.released = nil
		}
		clear(batch)
		cn.spare = batch[:0]
		cn.mu.Unlock()
		if err != nil {
			// A partial record would desynchronise the stream: drop it.
			cn.fail(fmt.Errorf("write: %w", err))
		}
	}
}

// writeGroupBytes is how many bytes one writev of a batch carries before
// the write deadline is renewed (StallTimeout bounds the write of each
// group, as it bounded each request when they were written one by one).
const writeGroupBytes = 1 << 20

// writeBatch writes the records of batch, with their payloads, in as few
// writev calls as the group size allows.
func (cn *conn) writeBatch(batch []*call) error {
	size := 0
	cn.iov = cn.iov[:0]
	for i, cl := range batch {
		cn.iov = append(cn.iov, cl.enc.buf)
		size += len(cl.enc.buf)
		if p := cl.req.Payload; len(p) > 0 {
			cn.iov = append(cn.iov, p, padding(len(p)))
			size += len(p)
		}
		if size < writeGroupBytes && i < len(batch)-1 {
			continue
		}
		if err := cn.write(); err != nil {
			return err
		}
		size = 0
	}
	return nil
}

// write writes cn.iov under the stall deadline, then empties it (keeping
// its array for the next batch).
func (cn *conn) write() error {
	all := cn.iov
	defer func() {
		clear(all)
		cn.iov = all[:0]
	}()
	var deadline time.Time
	if d := cn.c.cfg.StallTimeout; d > 0 {
		deadline = time.Now().Add(d)
	}
	if cn.sock != nil {
		return cn.sock.writev(&cn.iov, deadline)
	}
	if err := cn.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if len(cn.iov) == 1 {
		_, err := cn.nc.Write(cn.iov[0])
		return err
	}
	// WriteTo consumes cn.iov (writev, resumed after a short write).
	_, err := cn.iov.WriteTo(cn.nc)
	return err
}

// wait waits for cl's result, or for ctx to end. A cancelled call whose
// record was not yet written is taken out of the queue and never sent;
// one that was sent leaves the table at once (its reply, if it comes, is
// skipped); one whose reply is being decoded waits for the decode. In
// every case wait returns only once the writer no longer reads the
// call's record or payload, and then recycles cl.
func (cn *conn) wait(ctx context.Context, cl *call) error {
	var err error
	select {
	case err = <-cl.done:
	case <-ctx.Done():
		err = cn.abandon(ctx, cl)
	}
	cn.awaitReleased(cl)
	cn.c.putCall(cl)
	return err
}

// abandon handles a cancelled call: see wait.
func (cn *conn) abandon(ctx context.Context, cl *call) error {
	cn.mu.Lock()
	if cn.pending[cl.xid] != cl {
		// The reader, fail or the watchdog took it: a result is coming.
		cn.mu.Unlock()
		return <-cl.done
	}
	cn.forgetLocked(cl)
	cn.mu.Unlock()
	return ctx.Err()
}

// forgetLocked takes cl, which is in the table, out of it, and out of
// the queue if no writer has taken it yet (it is then never sent). Its
// reply, if one comes, is skipped.
func (cn *conn) forgetLocked(cl *call) {
	delete(cn.pending, cl.xid)
	if cl.state.Load() != callQueued {
		return
	}
	for i, q := range cn.queue {
		if q == cl {
			last := len(cn.queue) - 1
			copy(cn.queue[i:], cn.queue[i+1:])
			cn.queue[last] = nil
			cn.queue = cn.queue[:last]
			break
		}
	}
	cl.state.Store(callReleased)
	cn.c.putEncoder(cl.enc)
	cl.enc = nil
}

// awaitReleased returns once no writer reads cl's record or payload any
// more. A reply, or a broken connection, can end a call while its batch
// is still being written; the caller may then reuse the payload only
// once the write is over (the write itself is bounded by StallTimeout,
// and fails at once on a closed connection).
func (cn *conn) awaitReleased(cl *call) {
	for cl.state.Load() != callReleased {
		cn.mu.Lock()
		if cl.state.Load() == callReleased {
			cn.mu.Unlock()
			return
		}
		if cn.released == nil {
			cn.released = make(chan struct{})
		}
		ch := cn.released
		cn.mu.Unlock()
		<-ch
	}
}

// serve runs the connection's reader, with the watchdog beside it, until
// the connection fails.
func (cn *conn) serve() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cn.watch(stop)
	}()
	cn.readLoop()
	close(stop)
	wg.Wait()
}

// watch is the connection's watchdog, one timer for all its calls where
// there would otherwise be one or two per call: it fails each call whose
// Request.Deadline passes, and it declares the connection dead when some
// call has heard nothing at all from the server for
// Config.SilentTimeout since it was sent (a server that vanished without
// a FIN or RST), which fails every call on it retryably. It sleeps until
// the first moment either can happen; a call whose deadline comes before
// that wakes it (cn.poke).
func (cn *conn) watch(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next, dead := cn.check()
		if dead != nil {
			cn.fail(dead)
			return
		}
		t.Stop()
		var tc <-chan time.Time // nil, never ready, when nothing is due
		if next >= 0 {
			t.Reset(time.Duration(next - cn.now()))
			tc = t.C
		}
		select {
		case <-stop:
			return
		case <-tc:
		case <-cn.poke:
		}
	}
}

// check fails the calls whose deadline has passed and tells when it must
// look again (since epoch; -1: nothing due), or why the connection is
// dead.
func (cn *conn) check() (next int64, dead error) {
	silent := int64(cn.c.cfg.SilentTimeout)
	now := cn.now()
	next = -1
	due := func(at int64) {
		if next < 0 || at < next {
			next = at
		}
	}
	oldest := int64(-1)
	cn.mu.Lock()
	expired := cn.expired[:0]
	for _, cl := range cn.pending {
		if d := cl.deadline; d != 0 {
			if d <= now {
				cn.forgetLocked(cl)
				expired = append(expired, cl)
				continue
			}
			due(d)
		}
		if s := cl.sentAt; s != 0 && (oldest < 0 || s < oldest) {
			oldest = s
		}
	}
	if silent > 0 && oldest >= 0 {
		// Read after the table: a record that began since still counts.
		heard := max(oldest, cn.lastRecv.Load())
		if quiet := now - heard; quiet >= silent {
			dead = fmt.Errorf("nothing received from the server for %v", time.Duration(quiet).Round(time.Millisecond))
		}
		due(heard + silent)
	}
	cn.wakeAt = next
	if next < 0 {
		cn.wakeAt = math.MaxInt64
	}
	cn.mu.Unlock()
	for i, cl := range expired {
		cl.done <- context.DeadlineExceeded
		expired[i] = nil
	}
	cn.expired = expired[:0]
	return next, dead
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

// maxDeferredReplies bounds how many decoded replies the reader holds
// back before it hands them to their calls (see readLoop).
const maxDeferredReplies = 8

// readyCall is a decoded reply the reader has yet to hand to its call.
type readyCall struct {
	cl  *call
	res error
}

// readLoop reads replies until the connection fails, then returns with
// every pending call failed.
//
// On a socket the reader does not hand each decoded reply to its call at
// once: it keeps decoding while replies are there to read and hands them
// over, up to maxDeferredReplies at a time, when it would otherwise wait
// for the socket, and then yields its thread to the calls it woke before
// it waits. Waking a goroutine wakes a second thread to run it when one
// is idle; waking several together costs that once, and letting them run
// (and send their next requests) before the reader blocks in poll(2)
// keeps them from waiting for that thread or for the runtime to notice
// that the reader's thread is blocked. A reply is held back for at most
// the few reads it takes to find the socket empty.
func (cn *conn) readLoop() {
	if cn.br.raw != nil {
		cn.br.beforeWait = func() {
			if len(cn.ready) > 0 {
				cn.deliver()
				runtime.Gosched()
			}
		}
	}
	err := cn.readReplies()
	cn.deliver() // replies decoded before the failure are good
	cn.fail(err)
}

// deliver hands the held-back replies to their calls.
func (cn *conn) deliver() {
	for i, rc := range cn.ready {
		rc.cl.done <- rc.res
		cn.ready[i] = readyCall{}
	}
	cn.ready = cn.ready[:0]
}

// readReplies reads replies until the connection fails, and says why.
func (cn *conn) readReplies() error {
	rr := &recordReader{br: cn.br, maxBytes: cn.c.cfg.MaxRecordBytes}
	d := &Decoder{r: rr}
	stall := cn.c.cfg.StallTimeout
	for {
		if err := rr.begin(); err != nil {
			return err
		}
		cn.lastRecv.Store(cn.now())
		if stall > 0 {
			// The record has started: the rest must keep coming.
			if err := cn.br.SetDeadline(time.Now().Add(stall)); err != nil {
				return err
			}
		}
		d.err = nil
		xid := d.Uint32()
		mtype := d.Int32()
		if rr.err != nil {
			return rr.err
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
				return rr.err
			}
			cn.replied.Store(true)
			cn.ready = append(cn.ready, readyCall{cl, res})
			if cn.br.beforeWait == nil || len(cn.ready) >= maxDeferredReplies {
				cn.deliver()
			}
		}
		if err := rr.drain(); err != nil {
			return err
		}
		if stall > 0 {
			if err := cn.br.SetDeadline(time.Time{}); err != nil {
				return err
			}
		}
	}
}

// maxAuthBodyBytes is the RFC 5531 limit on an opaque_auth body.
const maxAuthBodyBytes = 400

// decodeReply decodes the reply header after xid and mtype (reply_body,
// RFC 5531 section 9) and, on SUCCESS, the results through req.Reply. The
// header is decoded by hand rather than with go-xdr's rpcv2 types, which
// allocate several objects per reply:
//
//	MSG_ACCEPTED | verf flavor | verf body<400> | accept_stat | SUCCESS: results
//	                                                          | PROG_MISMATCH: low, high
//	MSG_DENIED   | RPC_MISMATCH: low, high
//	             | AUTH_ERROR: auth_stat
func decodeReply(d *Decoder, req *Request) error {
	stat := rpcv2.ReplyStat(d.Int32())
	switch stat {
	case rpcv2.MSG_ACCEPTED:
		d.Int32() // verifier flavor: a client sending AUTH_SYS or AUTH_NONE ignores it
		d.skipOpaque(maxAuthBodyBytes)
		accept := rpcv2.AcceptStat(d.Int32())
		if d.err != nil {
			break
		}
		switch accept {
		case rpcv2.SUCCESS:
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
		case rpcv2.PROG_MISMATCH:
			low, high := d.Uint32(), d.Uint32()
			if d.err != nil {
				break
			}
			return &MismatchError{Kind: ErrProgMismatch, Low: low, High: high}
		case rpcv2.PROG_UNAVAIL:
			return ErrProgUnavail
		case rpcv2.PROC_UNAVAIL:
			return ErrProcUnavail
		case rpcv2.GARBAGE_ARGS:
			return ErrGarbageArgs
		case rpcv2.SYSTEM_ERR:
			return ErrSystemErr
		default:
			return fmt.Errorf("%w: accept_stat %d", ErrGarbageReply, accept)
		}
	case rpcv2.MSG_DENIED:
		switch reject := rpcv2.RejectStat(d.Int32()); reject {
		case rpcv2.RPC_MISMATCH:
			low, high := d.Uint32(), d.Uint32()
			if d.err != nil {
				break
			}
			return &MismatchError{Kind: ErrRPCMismatch, Low: low, High: high}
		case rpcv2.AUTH_ERROR:
			auth := rpcv2.AuthStat(d.Int32())
			if d.err != nil {
				break
			}
			return &AuthError{Stat: auth}
		default:
			if d.err == nil {
				return fmt.Errorf("%w: reject_stat %d", ErrGarbageReply, reject)
			}
		}
	default:
		if d.err == nil {
			return fmt.Errorf("%w: reply_stat %d", ErrGarbageReply, stat)
		}
	}
	return fmt.Errorf("%w: reply header: %w", ErrGarbageReply, d.err)
}
