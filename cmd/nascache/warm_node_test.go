package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestWarmAndStatusOnNode runs `nascache warm` and `nascache status`
// against a real node: cachefs over a local origin with a chunk store,
// the admin server on a TCP port, wired as wire.go does.
func TestWarmAndStatusOnNode(t *testing.T) {
	dir := t.TempDir()
	origin := filepath.Join(dir, "origin")
	sum, err := makeSampleTree(origin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		CacheSize: "64MiB",
		Exports:   []ExportConfig{{Path: "/demo", Origin: "file://" + origin}},
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(t.Context(), cfg, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if n.admin.api == nil {
		n.admin.serveAPI(newAdminAPI(adminAPIConfig{
			Warmer:  n.fs,
			Stats:   statsSource(n.fs, cfg.Exports, n.origins),
			Exports: cfg.Exports,
			Version: versionString(),
			Started: time.Now(),
		}, zerolog.New(io.Discard)))
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
	admin := "http://" + n.admin.Addr().String()

	e, out, errb := testEnv()
	if code := run(t.Context(), []string{"warm", "--admin", admin, "--pin", "/demo"}, e); code != exitOK {
		t.Fatalf("warm: exit %d\n%s%s", code, out, errb)
	}
	// A hard link is one more name to walk.
	files := sum.Files + sum.HardLinks
	want := fmt.Sprintf("done: %d/%d files", files, files)
	if !strings.Contains(out.String(), want) {
		t.Errorf("warm output lacks %q:\n%s", want, out)
	}

	e, out, errb = testEnv()
	if code := run(t.Context(), []string{"status", "--json", "--admin", admin}, e); code != exitOK {
		t.Fatalf("status: exit %d\n%s%s", code, out, errb)
	}
	var v statusView
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if v.Cache == nil || v.Cache.CachedBytes < sum.Bytes || v.Cache.PinnedBytes < sum.Bytes || v.Cache.CapacityBytes != 64<<20 {
		t.Errorf("cache after warming %d bytes with --pin: %+v", sum.Bytes, v.Cache)
	}
	if len(v.Exports) != 1 || v.Exports[0].State != exportUp || v.Exports[0].Consistency == "" {
		t.Errorf("exports: %+v", v.Exports)
	}

	e, out, errb = testEnv()
	if code := run(t.Context(), []string{"warm", "--admin", admin, "/elsewhere"}, e); code != exitFail || !strings.Contains(errb.String(), "no export holds /elsewhere (exports: /demo)") {
		t.Errorf("warm of an unknown export: exit %d\n%s%s", code, out, errb)
	}
}
