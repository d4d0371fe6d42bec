package nfsserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nascache/nascache/backend/local"
	"github.com/nascache/nascache/cachefs"
	"github.com/nascache/nascache/meta"
	"github.com/nascache/nascache/nfsserver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// smokeServer serves a temporary origin directory over TCP through the
// whole stack (nfsserver -> cachefs -> meta + backend/local) for one test.
func smokeServer(t *testing.T) (origin, addr string) {
	t.Helper()
	origin = t.TempDir()
	db, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), meta.Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	id, err := db.ExportID("/data")
	if err != nil {
		t.Fatal(err)
	}
	o, err := local.New(origin, local.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	fs, err := cachefs.New(cachefs.Config{Exports: []cachefs.ExportConfig{{ID: id, Path: "/data", Origin: o}}}, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fs.Close() })
	cfg := nfsserver.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HandleKey = db.HandleKey()
	cfg.Exports = []nfsserver.Export{{ID: id, Path: "/data", AnonUID: 65534, AnonGID: 65534}}
	srv, err := nfsserver.New(cfg, fs, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return origin, srv.Addr().String()
}

// requireLibnfs skips (loudly) when Debian's libnfs-utils are missing, and
// fails instead when CI=true.
func requireLibnfs(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nfs-ls", "nfs-cp", "nfs-cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("SKIPPING libnfs smoke test: %s not in PATH (apt-get install -y libnfs-utils)", tool)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

func runLibnfs(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstderr: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

func writeRandom(t *testing.T, path string, size int, seed uint64) [32]byte {
	t.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func sumFile(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestLibnfsSmoke drives the whole server path with a real user-space
// NFSv3 client (libnfs): MOUNT, LOOKUP, CREATE, WRITE of 64 MiB, READ back,
// READDIRPLUS, and a small file through nfs-cat.
func TestLibnfsSmoke(t *testing.T) {
	requireLibnfs(t)
	origin, addr := smokeServer(t)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	url := func(p string) string {
		return fmt.Sprintf("nfs://127.0.0.1/data/%s?version=3&nfsport=%s&mountport=%s", p, port, port)
	}
	work := t.TempDir()

	const size = 64 << 20
	up := writeRandom(t, filepath.Join(work, "up.bin"), size, 1)
	runLibnfs(t, "nfs-cp", filepath.Join(work, "up.bin"), url("up.bin"))
	if got := sumFile(t, filepath.Join(origin, "up.bin")); got != up {
		t.Fatalf("uploaded file differs at the origin")
	}

	down := writeRandom(t, filepath.Join(origin, "down.bin"), size+12345, 2)
	runLibnfs(t, "nfs-cp", url("down.bin"), filepath.Join(work, "down.bin"))
	if got := sumFile(t, filepath.Join(work, "down.bin")); got != down {
		t.Fatalf("downloaded file differs from the origin")
	}
	runLibnfs(t, "nfs-cp", url("up.bin"), filepath.Join(work, "up-again.bin"))
	if got := sumFile(t, filepath.Join(work, "up-again.bin")); got != up {
		t.Fatalf("uploaded file read back differs")
	}

	if err := os.WriteFile(filepath.Join(origin, "hello.txt"), []byte("hello, nascache\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(origin, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := string(runLibnfs(t, "nfs-cat", url("hello.txt"))); got != "hello, nascache\n" {
		t.Fatalf("nfs-cat: %q", got)
	}

	ls := string(runLibnfs(t, "nfs-ls", url("")))
	for name, sz := range map[string]int{"up.bin": size, "down.bin": size + 12345, "hello.txt": 16} {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)\s%d\s.*\b%s$`, sz, regexp.QuoteMeta(name))).MatchString(ls) {
			t.Errorf("nfs-ls does not list %s with size %d:\n%s", name, sz, ls)
		}
	}
	if !regexp.MustCompile(`(?m)^d.*\ssub$`).MatchString(ls) {
		t.Errorf("nfs-ls does not list directory sub:\n%s", ls)
	}
}
