package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestMain fails the package if any goroutine of this package outlives
// the tests: every Run must have stopped everything it started.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines running code of this
// package, other than the caller's. A goroutine that has called
// wg.Done in a deferred call may still be on its way out when Run
// returns, so it yields the processor a bounded number of times (no
// sleeps, no clock) before it reports.
func leakedGoroutines() string {
	var leaked string
	for range 1000 {
		if leaked = leakedGoroutinesOnce(); leaked == "" {
			return ""
		}
		runtime.Gosched()
	}
	return leaked
}

func leakedGoroutinesOnce() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "nfsserver.leakedGoroutines") || strings.Contains(g, "nfsserver.TestMain") {
			continue
		}
		if strings.Contains(g, "nascache/nfsserver.") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

func TestLifecycle(t *testing.T) {
	cfg := testConfig()
	cfg.PortmapListen = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, newFakeFS(1), zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != nil || srv.PortmapAddr() != nil {
		t.Fatal("addresses before Listen")
	}
	if err := srv.Run(context.Background()); !errors.Is(err, ErrNotListening) {
		t.Fatalf("Run before Listen: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// Open connections, one with a call answered, one idle, one on the
	// portmapper; cancelling Run must close them all and return.
	c := dial(t, srv.Addr())
	c.call(progNFS, 3, 0, nil)
	dial(t, srv.Addr())
	pc := dial(t, srv.PortmapAddr())
	pc.call(progPortmap, 2, 0, nil)
	if got := counterValue(t, reg, "nascache_nfs_requests_total", map[string]string{"program": "nfs", "procedure": "NULL", "status": "OK"}); got != 1 {
		t.Errorf("requests metric %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if leaked := leakedGoroutines(); leaked != "" {
		t.Fatalf("goroutines left after Run returned:\n%s", leaked)
	}
	if _, err := c.c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Run returned")
	}
	if _, err := New(cfg, newFakeFS(1), zerolog.Nop(), reg); err == nil {
		t.Fatal("second New on the same registry must fail to register metrics")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig()
	cfg.HandleKey = nil
	if _, err := New(cfg, newFakeFS(1), zerolog.Nop(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with no key: %v", err)
	}
	if _, err := New(testConfig(), nil, zerolog.Nop(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with nil FS: %v", err)
	}
}

// counterValue reads one counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func TestCloseWithoutRun(t *testing.T) {
	cfg := testConfig()
	cfg.PortmapListen = "127.0.0.1:0"
	srv, err := New(cfg, newFakeFS(1), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The port is free again.
	srv2, err := New(Config{Listen: srv.Addr().String(), Exports: cfg.Exports, HandleKey: testKey, MaxInFlightPerConn: 1}, newFakeFS(1), zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Listen(); err != nil {
		t.Fatalf("Listen on the closed server's port: %v", err)
	}
	if err := srv2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Run(context.Background()); err == nil {
		t.Fatal("Run after Close must fail")
	}
}
