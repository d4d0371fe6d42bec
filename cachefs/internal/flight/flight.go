// Package flight is a context-aware singleflight: callers that ask for the
// same key while a fetch of it runs share that one fetch.
//
// Unlike golang.org/x/sync/singleflight, a caller whose context ends stops
// waiting at once, and the shared fetch is cancelled only when every
// caller waiting for it has left: one impatient reader never fails the
// others, and a fetch nobody wants any more stops using the origin.
//
// The fetch runs in a goroutine the Group owns: Close cancels every fetch
// in flight and waits for them. The fetch may hand its result to the
// waiters early (Publish) and keep working, e.g. storing what it fetched;
// the key stays in flight until the fetch function returns, so a caller
// arriving meanwhile gets the published result instead of starting a
// second fetch.
//
// # Held results
//
// A Group made with NewHeld owns the values its fetches produce (pooled
// buffers, say): DoHeld hands each caller the value together with a
// release function, and the Group gives the value to its free function
// once the fetch has returned and every caller that got it has released
// it (and no caller still waits for it). So a fetch can publish a buffer
// to many readers and the buffer is recycled only after the last of them
// copied from it.
//
// # Concurrency
//
// Group.mu guards calls and closed, and each call's waiters, holders,
// running and freed; each call's result fields are written once before
// its done channel is closed and only read after it.
package flight

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("flight: group closed")

// Group runs at most one fetch per key at a time.
type Group[K comparable, V any] struct {
	base   context.Context // parent of every fetch's context; ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetch goroutines
	// free, if set (NewHeld), takes back a published value once nobody
	// holds it; called without mu held.
	free func(V)

	mu     sync.Mutex // guards calls and closed
	calls  map[K]*call[V]
	closed bool
}

// call is one fetch in flight.
type call[V any] struct {
	cancel  context.CancelFunc
	waiters int // guarded by Group.mu
	// holders are callers of DoHeld that got the result and have not
	// released it; running is set while fn runs; freed once the value was
	// given to free. All guarded by Group.mu.
	holders int
	running bool
	freed   bool
	once    sync.Once
	done    chan struct{} // closed when val/err are set
	val     V
	err     error
}

// New returns an empty Group. It starts nothing.
func New[K comparable, V any]() *Group[K, V] {
	base, cancel := context.WithCancel(context.Background())
	return &Group[K, V]{base: base, cancel: cancel, calls: make(map[K]*call[V])}
}

// NewHeld returns an empty Group whose published values are given to free
// once nobody holds them (see "Held results"); use DoHeld with it. A fetch
// that fails must take back itself whatever it made: free only sees
// values published without an error.
func NewHeld[K comparable, V any](free func(V)) *Group[K, V] {
	g := New[K, V]()
	g.free = free
	return g
}

// Publish hands the result of a fetch to its waiters; later calls of the
// same Publish do nothing. A fetch that does not call it publishes what
// it returns.
type Publish[V any] func(V, error)

// Do returns the result of fn for key, sharing one run of fn with every
// caller asking for key while it runs. fn runs in a goroutine of the
// Group with a context that ends when every waiter has left or the Group
// is closed (never because of one waiter's ctx alone). shared reports
// whether the result came from a fetch this caller did not start.
//
// Do is for groups made with New; with a NewHeld group use DoHeld.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(ctx context.Context, publish Publish[V]) (V, error)) (v V, shared bool, err error) {
	c, ok, err := g.join(key, fn)
	if err != nil {
		return v, false, err
	}
	select {
	case <-c.done:
		g.leave(key, c, false)
		return c.val, ok, c.err
	case <-ctx.Done():
		g.leave(key, c, true)
		return v, ok, ctx.Err()
	}
}

// DoHeld is Do for a group made with NewHeld: when err is nil the caller
// holds v and must call release, once, when it no longer uses v; free
// gets v after the last holder released it.
func (g *Group[K, V]) DoHeld(ctx context.Context, key K, fn func(ctx context.Context, publish Publish[V]) (V, error)) (v V, release func(), shared bool, err error) {
	c, ok, err := g.join(key, fn)
	if err != nil {
		return v, nil, false, err
	}
	select {
	case <-c.done:
		if c.err != nil {
			g.leave(key, c, false)
			return v, nil, ok, c.err
		}
		g.mu.Lock()
		c.waiters--
		c.holders++
		g.mu.Unlock()
		var once sync.Once
		return c.val, func() { once.Do(func() { g.unhold(c) }) }, ok, nil
	case <-ctx.Done():
		g.leave(key, c, true)
		return v, nil, ok, ctx.Err()
	}
}

// join registers a waiter for key, starting fn if no fetch of key runs.
func (g *Group[K, V]) join(key K, fn func(context.Context, Publish[V]) (V, error)) (c *call[V], shared bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false, ErrClosed
	}
	c, ok := g.calls[key]
	if ok {
		c.waiters++
		return c, true, nil
	}
	fctx, cancel := context.WithCancel(g.base)
	c = &call[V]{cancel: cancel, waiters: 1, running: true, done: make(chan struct{})}
	g.calls[key] = c
	g.wg.Add(1)
	go g.run(fctx, key, c, fn)
	return c, false, nil
}

// leave drops one waiter of c. The last waiter to give up before the
// result cancels the fetch and forgets the key, so a later caller starts
// afresh instead of joining a dying fetch.
func (g *Group[K, V]) leave(key K, c *call[V], gaveUp bool) {
	g.mu.Lock()
	c.waiters--
	if gaveUp && c.waiters == 0 {
		select {
		case <-c.done:
			// The result is there; let the fetch finish its work.
		default:
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
		}
	}
	free := g.freeableLocked(c)
	g.mu.Unlock()
	if free {
		g.free(c.val)
	}
}

// unhold ends one holder of c's value.
func (g *Group[K, V]) unhold(c *call[V]) {
	g.mu.Lock()
	c.holders--
	free := g.freeableLocked(c)
	g.mu.Unlock()
	if free {
		g.free(c.val)
	}
}

// freeableLocked reports whether c's value is to be given to free now
// (and marks it so, so that only one caller does).
func (g *Group[K, V]) freeableLocked(c *call[V]) bool {
	if g.free == nil || c.freed || c.running || c.waiters > 0 || c.holders > 0 {
		return false
	}
	select {
	case <-c.done:
	default:
		return false
	}
	if c.err != nil {
		return false
	}
	c.freed = true
	return true
}

func (g *Group[K, V]) run(ctx context.Context, key K, c *call[V], fn func(context.Context, Publish[V]) (V, error)) {
	defer g.wg.Done()
	defer c.cancel()
	publish := func(v V, err error) {
		c.once.Do(func() {
			c.val, c.err = v, err
			close(c.done)
		})
	}
	v, err := fn(ctx, publish)
	publish(v, err)
	g.mu.Lock()
	if g.calls[key] == c {
		delete(g.calls, key)
	}
	c.running = false
	free := g.freeableLocked(c)
	g.mu.Unlock()
	if free {
		g.free(c.val)
	}
}

// Wait waits for the fetches in flight, including the work they do after
// publishing, to return. Calls of Do made while Wait runs may or may not
// be waited for; it is meant for tests and orderly shutdown.
func (g *Group[K, V]) Wait() { g.wg.Wait() }

// Close cancels every fetch in flight and waits for them to return. Do
// fails with ErrClosed afterwards. Close may be called more than once.
func (g *Group[K, V]) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
