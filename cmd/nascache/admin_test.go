package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestAdminHandler(t *testing.T) {
	var ready atomic.Bool
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "nascache_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	h := newAdminHandler(&ready, reg, nil)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before serving = %d, want 503", code)
	}
	ready.Store(true)
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz while serving = %d %q, want 200 ok", code, body)
	}
	ready.Store(false)
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after stopping = %d, want 503", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "nascache_test_total 3") {
		t.Errorf("/metrics = %d, body lacks the registry's counter:\n%s", code, body)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine = %d, not a goroutine profile", code)
	}
	if code, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

// TestAdminServerRun serves on a real socket and stops when ctx ends.
func TestAdminServerRun(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	a, err := listenAdmin("127.0.0.1:0", &ready, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	resp, err := http.Get("http://" + a.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz = %d %q %v", resp.StatusCode, body, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v", err)
	}
	if _, err := http.Get("http://" + a.Addr().String() + "/healthz"); err == nil {
		t.Error("admin server still answers after Run returned")
	}
}

// TestAdminServerStopsWarmJobs: Run owns the API's warm jobs and returns
// only once they have stopped.
func TestAdminServerStopsWarmJobs(t *testing.T) {
	var ready atomic.Bool
	a, err := listenAdmin("127.0.0.1:0", &ready, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeWarmer()
	a.serveAPI(newTestAPI(f, adminAPIConfig{}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	resp, err := http.Post("http://"+a.Addr().String()+"/v1/warm", "application/json", strings.NewReader(`{"paths": ["/data"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/warm = %d", resp.StatusCode)
	}
	c := <-f.calls
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v", err)
	}
	select {
	case <-c.ctx.Done():
	default:
		t.Error("Run returned while the warm job's context was live")
	}
	if v, _ := a.api.jobs.view(testJobID); v.State != jobCancelled {
		t.Errorf("job after Run: %s, want cancelled", v.State)
	}
}
