package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

func TestSharedFetch(t *testing.T) { synctest.Test(t, testSharedFetch) }

func testSharedFetch(t *testing.T) {
	g := New[int, string]()
	defer g.Close()
	release := make(chan struct{})
	var runs atomic.Int32
	fn := func(ctx context.Context, _ Publish[string]) (string, error) {
		runs.Add(1)
		<-release
		return "v", nil
	}
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			v, _, err := g.Do(t.Context(), 1, fn)
			if err != nil || v != "v" {
				t.Errorf("Do = %q, %v", v, err)
			}
		})
	}
	synctest.Wait() // every caller waits in Do
	g.mu.Lock()
	waiters := g.calls[1].waiters
	g.mu.Unlock()
	if waiters != n {
		t.Fatalf("%d waiters, want %d", waiters, n)
	}
	close(release)
	wg.Wait()
	if got := runs.Load(); got != 1 {
		t.Fatalf("fn ran %d times, want 1", got)
	}
}

func TestCancelOnlyWhenAllLeave(t *testing.T) { synctest.Test(t, testCancelOnlyWhenAllLeave) }

func testCancelOnlyWhenAllLeave(t *testing.T) {
	g := New[int, int]()
	defer g.Close()
	started := make(chan struct{})
	cancelled := make(chan struct{})
	fn := func(ctx context.Context, _ Publish[int]) (int, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return 0, ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(t.Context())
	ctx2, cancel2 := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	go func() { _, _, err := g.Do(ctx1, 7, fn); errs <- err }()
	<-started
	go func() { _, _, err := g.Do(ctx2, 7, fn); errs <- err }()
	synctest.Wait() // both callers wait in Do
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first waiter: %v", err)
	}
	synctest.Wait()
	select {
	case <-cancelled:
		t.Fatal("fetch cancelled while a waiter remained")
	default:
	}
	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second waiter: %v", err)
	}
	<-cancelled
}

func TestPublishEarly(t *testing.T) {
	g := New[int, int]()
	defer g.Close()
	finish := make(chan struct{})
	finished := make(chan struct{})
	fn := func(ctx context.Context, publish Publish[int]) (int, error) {
		publish(42, nil)
		<-finish
		close(finished)
		return 0, errors.New("ignored: already published")
	}
	v, _, err := g.Do(t.Context(), 1, fn)
	if v != 42 || err != nil {
		t.Fatalf("Do = %d, %v", v, err)
	}
	// Still in flight: a second caller shares the published result.
	v, shared, err := g.Do(t.Context(), 1, fn)
	if v != 42 || err != nil || !shared {
		t.Fatalf("second Do = %d, %v, shared %v", v, err, shared)
	}
	close(finish)
	<-finished
}

func TestClose(t *testing.T) {
	g := New[int, int]()
	started := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		_, _, err := g.Do(t.Context(), 1, func(ctx context.Context, _ Publish[int]) (int, error) {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		})
		errs <- err
	}()
	<-started
	g.Close()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after Close = %v", err)
	}
	if _, _, err := g.Do(t.Context(), 2, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do on closed group = %v", err)
	}
}
