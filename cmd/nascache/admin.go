package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// adminServer serves the operator HTTP endpoints:
//
//	/healthz  200 "ok" once the node serves NFS, 503 before and while stopping
//	/metrics  Prometheus text format from the node's own registry
type adminServer struct {
	ready  *atomic.Bool
	srv    *http.Server
	ln     net.Listener
	logger zerolog.Logger
}

// newAdminHandler returns the admin mux. ready says whether the node serves.
func newAdminHandler(ready *atomic.Bool, gather prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not serving")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	return mux
}

// listenAdmin binds addr; the server starts in Run.
func listenAdmin(addr string, ready *atomic.Bool, gather prometheus.Gatherer, logger zerolog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	return &adminServer{
		ready: ready,
		srv: &http.Server{
			Handler:           newAdminHandler(ready, gather),
			ReadHeaderTimeout: 10 * time.Second,
		},
		ln:     ln,
		logger: logger,
	}, nil
}

// Addr is the bound address.
func (a *adminServer) Addr() net.Addr { return a.ln.Addr() }

// Run serves until ctx is cancelled, then shuts down, giving in-flight
// requests a few seconds.
func (a *adminServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin serve %s: %w", a.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		a.logger.Warn().Err(err).Msg("admin server shutdown")
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin serve %s: %w", a.ln.Addr(), err)
	}
	return nil
}
