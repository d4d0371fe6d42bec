package oncrpc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// AuthSys are AUTH_SYS credentials (RFC 5531 appendix A). At most 16
// supplementary groups go on the wire; more are dropped, as every AUTH_SYS
// client does.
type AuthSys struct {
	UID  uint32
	GID  uint32
	GIDs []uint32
}

// maxAuthGroups is the AUTH_SYS limit on supplementary groups.
const maxAuthGroups = 16

// Request is one call. Args and Reply run on different goroutines: Args on
// the caller's before the request is sent, Reply on the connection's reader
// when the reply arrives.
type Request struct {
	Prog, Vers, Proc uint32
	// Auth are the credentials sent; nil sends AUTH_NONE.
	Auth *AuthSys
	// Args encodes the procedure's arguments; nil encodes none.
	Args func(e *Encoder)
	// Deadline, if not zero, ends the call with an error matching
	// context.DeadlineExceeded when it passes, as a ctx with that
	// deadline would, but without a timer per call: the connection's
	// watchdog keeps one timer for all its calls.
	Deadline time.Time
	// Payload is sent after what Args encoded, followed by its XDR
	// padding, without being copied (writev). Args must already have
	// encoded its length. Payload must not change until Call returns.
	Payload []byte
	// Reply decodes the procedure's results from d. It runs on the
	// connection's reader goroutine and must not block on anything but
	// d; it may write into memory the caller owns (a READ decodes its
	// data straight into the caller's buffer), because Call does not
	// return while Reply runs. Bytes it leaves unread are skipped. nil
	// skips the results.
	Reply func(d *Decoder) error
}

// Client makes ONC RPC v2 calls to one server address over a small pool
// of TCP connections, many calls outstanding on each. See the package doc.
type Client struct {
	cfg      Config
	xid      atomic.Uint32
	encPool  sync.Pool // *Encoder, reset before Put
	callPool sync.Pool // *call, with an empty done channel

	// ready is the connections in stateReady, as a snapshot replaced
	// (under mu) whenever a slot changes state, so that a call picks a
	// connection without taking mu.
	ready atomic.Pointer[[]*conn]

	ctx    context.Context // cancelled by Close: stops dials and backoff waits
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per slot goroutine

	mu      sync.Mutex // guards slots' state, changed, closed
	slots   []*slot
	changed chan struct{} // closed and replaced whenever a slot changes state
	closed  bool
}

type slotState uint8

const (
	stateConnecting slotState = iota
	stateReady
	stateDown
)

// slot is one connection position of the pool; its goroutine (run) makes
// and re-makes the connection. Its fields are guarded by Client.mu.
type slot struct {
	state   slotState
	conn    *conn
	lastErr error
}

// New validates cfg and starts the client's connection goroutines; Close
// stops them. Connections are made in the background: a call made before
// the first one is up waits for it (bounded by its ctx and DialTimeout).
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, ctx: ctx, cancel: cancel, changed: make(chan struct{})}
	c.xid.Store(rand.Uint32())
	for range cfg.Conns {
		c.slots = append(c.slots, &slot{state: stateConnecting})
	}
	// Start the slots only once the list is complete: they read it.
	for _, s := range c.slots {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(s)
		}()
	}
	return c, nil
}

// Close stops every connection goroutine and fails outstanding calls with
// ErrClosed. It waits until all of the client's goroutines have exited.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	c.ready.Store(nil)
	var conns []*conn
	for _, s := range c.slots {
		if s.conn != nil {
			conns = append(conns, s.conn)
		}
	}
	c.notifyLocked()
	c.mu.Unlock()
	for _, cn := range conns {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// notifyLocked wakes whoever waits for a slot to change state and
// refreshes the snapshot of ready connections.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
	var ready []*conn
	if !c.closed {
		for _, s := range c.slots {
			if s.state == stateReady {
				ready = append(ready, s.conn)
			}
		}
	}
	c.ready.Store(&ready)
}

func (c *Client) setState(s *slot, st slotState, cn *conn, err error) {
	c.mu.Lock()
	s.state, s.conn = st, cn
	if err != nil {
		s.lastErr = err
	}
	c.notifyLocked()
	c.mu.Unlock()
}

// run keeps slot s connected until Close.
func (c *Client) run(s *slot) {
	log := c.cfg.Logger.With().Str("addr", c.cfg.Addr).Logger()
	failures := 0
	for {
		if failures > 0 {
			d := backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, failures)
			t := time.NewTimer(d)
			select {
			case <-c.ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if c.ctx.Err() != nil {
			c.setState(s, stateDown, nil, ErrClosed)
			return
		}
		c.setState(s, stateConnecting, nil, nil)
		nc, err := c.dial()
		var cn *conn
		if err == nil {
			cn, err = newConn(c, nc)
		}
		if err != nil {
			if c.ctx.Err() != nil {
				c.setState(s, stateDown, nil, ErrClosed)
				return
			}
			failures++
			if failures == 1 || failures%10 == 0 {
				log.Warn().Err(err).Int("failures", failures).Msg("rpc connect failed")
			}
			c.setState(s, stateDown, nil, err)
			continue
		}
		// Publish cn under the lock Close takes, so that Close either
		// sees it (and fails it) or cn sees closed.
		c.mu.Lock()
		if c.closed {
			s.state = stateDown
			c.mu.Unlock()
			cn.fail(ErrClosed)
			return
		}
		s.state, s.conn = stateReady, cn
		c.notifyLocked()
		c.mu.Unlock()
		if failures > 0 {
			log.Info().Int("failures", failures).Msg("rpc connection re-established")
		}
		cn.serve()
		// Every call in flight on cn has been failed by now.
		if cn.replied.Load() {
			failures = 0
		} else {
			failures++
		}
		cause := cn.cause()
		if !errors.Is(cause, ErrClosed) {
			log.Warn().Err(cause).Msg("rpc connection lost")
		}
		c.setState(s, stateDown, nil, cause)
	}
}

func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	// Jitter in [d/2, d) keeps a fleet of clients from redialing in step.
	return d/2 + rand.N(d/2+1)
}

func (c *Client) dial() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	defer cancel()
	if c.cfg.Dial != nil {
		return c.cfg.Dial(ctx)
	}
	if !c.cfg.PrivilegedPort {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.cfg.Addr)
	}
	return dialPrivileged(ctx, c.cfg.Addr)
}

// dialPrivileged binds the local end to a free port in 665..1023, from the
// top, as bindresvport does (ports below 665 are left to well-known
// services).
func dialPrivileged(ctx context.Context, addr string) (net.Conn, error) {
	var lastErr error
	for port := 1023; port >= 665; port-- {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			},
		}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return nc, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free privileged port: %w", lastErr)
}

// pick returns the ready connection with the fewest calls outstanding,
// waiting (until ctx is done or deadline, unless zero, passes) while a
// connection attempt is under way.
func (c *Client) pick(ctx context.Context, deadline time.Time) (*conn, error) {
	if ready := c.ready.Load(); ready != nil && len(*ready) > 0 {
		best := (*ready)[0]
		for _, cn := range (*ready)[1:] {
			if cn.outstanding.Load() < best.outstanding.Load() {
				best = cn
			}
		}
		return best, nil
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		var best *conn
		connecting := false
		var lastErr error
		for _, s := range c.slots {
			switch s.state {
			case stateReady:
				if best == nil || s.conn.outstanding.Load() < best.outstanding.Load() {
					best = s.conn
				}
			case stateConnecting:
				connecting = true
			case stateDown:
				if s.lastErr != nil {
					lastErr = s.lastErr
				}
			}
		}
		if best != nil {
			c.mu.Unlock()
			return best, nil
		}
		if !connecting {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrNoConnection, lastErr)
		}
		ch := c.changed
		c.mu.Unlock()
		if !deadline.IsZero() {
			// Rare (no connection up): a timer is fine here.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			deadline = time.Time{}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNoConnection, ctx.Err())
		}
	}
}

// Connected reports whether at least one connection is up now. It never
// blocks on the network, so a metrics gauge can call it at scrape time.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.slots {
		if s.state == stateReady {
			return true
		}
	}
	return false
}

// WaitConnected blocks until at least one connection is up, or ctx is
// done, or the client is closed.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		for _, s := range c.slots {
			if s.state == stateReady {
				c.mu.Unlock()
				return nil
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Call sends req and waits for its reply, until ctx is done. On a
// cancelled ctx it returns ctx's error at once unless the reply is already
// being decoded, in which case it waits for Reply to finish (so Reply never
// writes into memory the caller has taken back).
func (c *Client) Call(ctx context.Context, req *Request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !req.Deadline.IsZero() && !time.Now().Before(req.Deadline) {
		return context.DeadlineExceeded
	}
	cn, err := c.pick(ctx, req.Deadline)
	if err != nil {
		return err
	}
	return cn.call(ctx, req)
}

func (c *Client) getEncoder() *Encoder {
	if e, ok := c.encPool.Get().(*Encoder); ok {
		return e
	}
	return &Encoder{buf: make([]byte, 0, 512)}
}

func (c *Client) getCall() *call {
	if cl, ok := c.callPool.Get().(*call); ok {
		return cl
	}
	return &call{done: make(chan error, 1)}
}

// putCall recycles cl; see call for when that is allowed.
func (c *Client) putCall(cl *call) {
	cl.req, cl.enc = nil, nil
	c.callPool.Put(cl)
}

func (c *Client) putEncoder(e *Encoder) {
	if cap(e.buf) > 64<<10 {
		return // a rare big request; let it go rather than pin it
	}
	e.buf = e.buf[:0]
	c.encPool.Put(e)
}

// WaitState blocks until Connected() == up, or ctx is done, or the client
// is closed (ErrClosed). An origin-state monitor uses it to log each
// change without polling.
func (c *Client) WaitState(ctx context.Context, up bool) error {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		connected := false
		for _, s := range c.slots {
			if s.state == stateReady {
				connected = true
				break
			}
		}
		if connected == up {
			c.mu.Unlock()
			return nil
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
