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

func TestHeldFreedAfterLastRelease(t *testing.T) { synctest.Test(t, testHeldFreedAfterLastRelease) }

func testHeldFreedAfterLastRelease(t *testing.T) {
	var freed atomic.Int32
	var freedVal atomic.Value
	g := NewHeld[int, *int](func(v *int) { freed.Add(1); freedVal.Store(v) })
	defer g.Close()
	published := make(chan struct{})
	finish := make(chan struct{})
	val := new(int)
	fn := func(ctx context.Context, publish Publish[*int]) (*int, error) {
		publish(val, nil)
		close(published)
		<-finish // keeps working after publishing (storing the chunk, say)
		return val, nil
	}
	const n = 8
	releases := make(chan func(), n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			v, release, _, err := g.DoHeld(t.Context(), 1, fn)
			if err != nil || v != val {
				t.Errorf("DoHeld = %v, %v", v, err)
				return
			}
			releases <- release
		})
	}
	wg.Wait()
	<-published
	for range n {
		(<-releases)()
	}
	synctest.Wait()
	if freed.Load() != 0 {
		t.Fatal("freed while the fetch was still running")
	}
	// A caller arriving while the fetch still runs shares the result too.
	v, release, shared, err := g.DoHeld(t.Context(), 1, fn)
	if err != nil || v != val || !shared {
		t.Fatalf("late DoHeld = %v, %v, shared %v", v, err, shared)
	}
	close(finish)
	synctest.Wait()
	if freed.Load() != 0 {
		t.Fatal("freed while a caller held the value")
	}
	release()
	release() // a second call does nothing
	synctest.Wait()
	if got := freed.Load(); got != 1 || freedVal.Load().(*int) != val {
		t.Fatalf("freed %d times, want once with the published value", got)
	}
}

func TestHeldNotFreedOnError(t *testing.T) { synctest.Test(t, testHeldNotFreedOnError) }

func testHeldNotFreedOnError(t *testing.T) {
	var freed atomic.Int32
	g := NewHeld[int, int](func(int) { freed.Add(1) })
	defer g.Close()
	boom := errors.New("boom")
	_, release, _, err := g.DoHeld(t.Context(), 1, func(context.Context, Publish[int]) (int, error) { return 7, boom })
	if !errors.Is(err, boom) || release != nil {
		t.Fatalf("DoHeld = %v, release %v", err, release != nil)
	}
	g.Wait()
	if freed.Load() != 0 {
		t.Fatal("a failed fetch's value was freed")
	}
}

func TestHeldAbandonedFetchFreed(t *testing.T) { synctest.Test(t, testHeldAbandonedFetchFreed) }

// A fetch every caller gave up on is forgotten (a new caller starts
// another) and its value, when it comes, is freed at once; the new fetch's
// value is freed after its holder releases it.
func testHeldAbandonedFetchFreed(t *testing.T) {
	var freed atomic.Int32
	g := NewHeld[int, int](func(int) { freed.Add(1) })
	defer g.Close()
	finish := make(chan struct{})
	var runs atomic.Int32
	fn := func(ctx context.Context, publish Publish[int]) (int, error) {
		runs.Add(1)
		<-finish
		return 5, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() {
		_, _, _, err := g.DoHeld(ctx, 1, fn)
		gaveUp <- err
	}()
	synctest.Wait()
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("gave up with %v", err)
	}
	type result struct {
		v       int
		release func()
		err     error
	}
	second := make(chan result, 1)
	go func() {
		v, release, _, err := g.DoHeld(t.Context(), 1, fn)
		second <- result{v, release, err}
	}()
	synctest.Wait()
	close(finish)
	r := <-second
	if r.err != nil || r.v != 5 || runs.Load() != 2 {
		t.Fatalf("second DoHeld = %d, %v after %d runs", r.v, r.err, runs.Load())
	}
	synctest.Wait()
	if got := freed.Load(); got != 1 {
		t.Fatalf("%d frees before the release, want 1 (the abandoned fetch's)", got)
	}
	r.release()
	if got := freed.Load(); got != 2 {
		t.Fatalf("%d frees after the release, want 2", got)
	}
}
