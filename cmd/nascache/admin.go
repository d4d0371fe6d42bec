package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
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
//	/v1/...   the JSON admin API (adminapi.go), once serveAPI was called
//	/debug/pprof/...  Go's profiles (CPU, heap, goroutines, trace), for
//	          finding where a node spends its time in production
//
// None of them authenticates: admin_listen binds to localhost by default
// and must not be exposed beyond the node.
type adminServer struct {
	ready  *atomic.Bool
	gather prometheus.Gatherer
	srv    *http.Server
	ln     net.Listener
	logger zerolog.Logger
	api    *adminAPI // nil until serveAPI; Run closes it
}

// newAdminHandler returns the admin mux. ready says whether the node
// serves; api, when not nil, adds the /v1 routes.
func newAdminHandler(ready *atomic.Bool, gather prometheus.Gatherer, api *adminAPI) http.Handler {
	mux := http.NewServeMux()
	if api != nil {
		api.register(mux)
	}
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
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// listenAdmin binds addr; the server starts in Run.
func listenAdmin(addr string, ready *atomic.Bool, gather prometheus.Gatherer, logger zerolog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	return &adminServer{
		ready:  ready,
		gather: gather,
		srv: &http.Server{
			Handler:           newAdminHandler(ready, gather, nil),
			ReadHeaderTimeout: 10 * time.Second,
		},
		ln:     ln,
		logger: logger,
	}, nil
}

// serveAPI adds the /v1 API. Call it before Run; Run then owns api and
// closes it (stopping its warm jobs) once the HTTP server has stopped.
func (a *adminServer) serveAPI(api *adminAPI) {
	a.api = api
	a.srv.Handler = newAdminHandler(a.ready, a.gather, api)
}

// Addr is the bound address.
func (a *adminServer) Addr() net.Addr { return a.ln.Addr() }

// Run serves until ctx is cancelled, then shuts down, giving in-flight
// requests a few seconds, and stops the API's warm jobs.
func (a *adminServer) Run(ctx context.Context) error {
	if a.api != nil {
		// After Shutdown: no request can start a job once Close runs.
		defer a.api.Close()
	}
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
