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
// # Concurrency
//
// Group.mu guards calls and closed; each call's result fields are written
// once before its done channel is closed and only read after it.
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

	mu     sync.Mutex // guards calls and closed
	calls  map[K]*call[V]
	closed bool
}

// call is one fetch in flight.
type call[V any] struct {
	cancel  context.CancelFunc
	waiters int // guarded by Group.mu
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

// Publish hands the result of a fetch to its waiters; later calls of the
// same Publish do nothing. A fetch that does not call it publishes what
// it returns.
type Publish[V any] func(V, error)

// Do returns the result of fn for key, sharing one run of fn with every
// caller asking for key while it runs. fn runs in a goroutine of the
// Group with a context that ends when every waiter has left or the Group
// is closed (never because of one waiter's ctx alone). shared reports
// whether the result came from a fetch this caller did not start.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(ctx context.Context, publish Publish[V]) (V, error)) (v V, shared bool, err error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return v, false, ErrClosed
	}
	c, ok := g.calls[key]
	if ok {
		c.waiters++
	} else {
		fctx, cancel := context.WithCancel(g.base)
		c = &call[V]{cancel: cancel, waiters: 1, done: make(chan struct{})}
		g.calls[key] = c
		g.wg.Add(1)
		go g.run(fctx, key, c, fn)
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		g.leave(key, c, false)
		return c.val, ok, c.err
	case <-ctx.Done():
		g.leave(key, c, true)
		return v, ok, ctx.Err()
	}
}

// leave drops one waiter of c. The last waiter to give up before the
// result cancels the fetch and forgets the key, so a later caller starts
// afresh instead of joining a dying fetch.
func (g *Group[K, V]) leave(key K, c *call[V], gaveUp bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if gaveUp && c.waiters == 0 {
		select {
		case <-c.done:
			return // the result is there; let the fetch finish its work
		default:
		}
		c.cancel()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
	}
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
	g.mu.Unlock()
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
