package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/nascache/nascache/backend"
)

// TestNodeStartsWithOriginDown: an nfs:// origin that does not answer
// does not keep the node from starting; calls needing it are retryable
// (NFS3ERR_JUKEBOX), the up gauge says 0 and the failures are counted.
func TestNodeStartsWithOriginDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if err := ln.Close(); err != nil { // nothing answers there now
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := &Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Exports: []ExportConfig{{Path: "/nas", Origin: "nfs://127.0.0.1:" + port + "/export?mountport=" + port}},
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(t.Context(), cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatalf("buildNode with the origin down: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, "") }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	id, err := n.db.ExportID("/nas")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.fs.Root(t.Context(), id); !backend.IsRetryable(err) {
		t.Errorf("Root with the origin down: %v (want retryable)", err)
	}
	resp, err := http.Get("http://" + n.admin.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`nascache_origin_up{export="/nas"} 0`,
		`nascache_origin_errors_total{class="unavailable",export="/nas"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestErrorClass(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{backend.ErrUnavailable, "unavailable"},
		{backend.ErrNotExist, "not_exist"},
		{backend.ErrStale, "stale"},
		{io.EOF, "other"},
	}
	for _, tt := range tests {
		if got := errorClass(tt.err); got != tt.want {
			t.Errorf("errorClass(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
