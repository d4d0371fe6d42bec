//go:build integration

package nfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs"
	"github.com/nascache/nascache/backend/origintest"
)

// ganesha is one nfs-ganesha started with the project's own
// integration/guest/start-ganesha.sh, exporting dir.
type ganesha struct {
	dir  string
	port int
}

var scriptDir = filepath.Join("..", "..", "integration", "guest")

// startGanesha starts ganesha on a free port pair in 39000-39999 and
// stops it when t ends. Without ganesha it skips, loudly, unless CI=true.
func startGanesha(t *testing.T) *ganesha {
	t.Helper()
	if _, err := exec.LookPath("ganesha.nfsd"); err != nil {
		msg := "ganesha.nfsd not installed (apt-get install nfs-ganesha nfs-ganesha-vfs): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING nfs-ganesha integration test: " + msg)
	}
	if os.Geteuid() != 0 {
		msg := "nfs-ganesha integration tests need root"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg)
	}
	g := &ganesha{dir: t.TempDir(), port: freePortPair(t)}
	g.start(t)
	t.Cleanup(func() { g.stop(t) })
	return g
}

func freePortPair(t *testing.T) int {
	t.Helper()
	for p := 39000 + os.Getpid()%500*2; ; p += 2 {
		if p > 39998 {
			p = 39000
		}
		a, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		_ = a.Close()
		if err != nil {
			continue
		}
		_ = b.Close()
		return p
	}
}

func (g *ganesha) start(t *testing.T) {
	t.Helper()
	out, err := exec.Command(filepath.Join(scriptDir, "start-ganesha.sh"), g.dir, strconv.Itoa(g.port)).CombinedOutput()
	if err != nil {
		t.Fatalf("start-ganesha.sh: %v\n%s", err, out)
	}
}

func (g *ganesha) stop(t *testing.T) {
	t.Helper()
	out, err := exec.Command(filepath.Join(scriptDir, "stop-ganesha.sh"), strconv.Itoa(g.port)).CombinedOutput()
	if err != nil {
		t.Errorf("stop-ganesha.sh: %v\n%s", err, out)
	}
}

func (g *ganesha) url(sub string) string {
	return fmt.Sprintf("nfs://127.0.0.1:%d%s?mountport=%d", g.port, filepath.Join(g.dir, sub), g.port+1)
}

var subSeq atomic.Int64

// newOrigin mounts a fresh empty subdirectory of the export.
func (g *ganesha) newOrigin(t *testing.T) (*nfs.Origin, string) {
	t.Helper()
	sub := fmt.Sprintf("t%d", subSeq.Add(1))
	if err := os.Mkdir(filepath.Join(g.dir, sub), 0o777); err != nil {
		t.Fatal(err)
	}
	o, err := nfs.New(t.Context(), g.url(sub), nfs.Options{})
	if err != nil {
		t.Fatalf("nfs.New: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o, filepath.Join(g.dir, sub)
}

func TestGaneshaConformance(t *testing.T) {
	g := startGanesha(t)
	origintest.Run(t, func(t *testing.T) backend.Origin {
		o, _ := g.newOrigin(t)
		return o
	})
}

var rootCred = backend.Cred{}

func TestGaneshaLargeIOAndOwners(t *testing.T) {
	g := startGanesha(t)
	o, local := g.newOrigin(t)
	ctx := t.Context()
	root, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	user := backend.Cred{UID: 1000, GID: 1000, GIDs: []uint32{1000, 27}}
	// Let uid 1000 create in the directory.
	mode := uint32(0o777)
	if _, err := o.SetAttr(ctx, rootCred, root, backend.SetAttr{Mode: &mode}, nil); err != nil {
		t.Fatal(err)
	}
	h, _, err := o.Create(ctx, user, root, "big", backend.CreateArgs{Mode: backend.CreateGuarded})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5<<20+123)
	for i := range data {
		data[i] = byte(i*131 + i>>13)
	}
	const off = 7
	st, a, err := o.Write(ctx, user, h, data, off, backend.Unstable)
	if err != nil {
		t.Fatal(err)
	}
	if a.SizeBytes != uint64(off+len(data)) {
		t.Errorf("size after write %d, want %d (stability %d)", a.SizeBytes, off+len(data), st)
	}
	if _, err := o.Commit(ctx, user, h); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(local, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk[off:], data) || !bytes.Equal(onDisk[:off], make([]byte, off)) {
		t.Fatal("data at the origin differs")
	}
	fi, err := os.Stat(filepath.Join(local, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if s := fi.Sys().(*syscall.Stat_t); s.Uid != 1000 || s.Gid != 1000 {
		t.Errorf("owner at the origin %d:%d, want 1000:1000", s.Uid, s.Gid)
	}
	for _, tc := range []struct{ off, n int }{{0, 1}, {3, 3 << 20}, {1<<20 - 1, 2<<20 + 5}, {len(onDisk) - 10, 100}, {len(onDisk) + 5, 10}} {
		buf := make([]byte, tc.n)
		n, eof, err := o.Read(ctx, user, h, buf, uint64(tc.off))
		if err != nil {
			t.Fatalf("read %+v: %v", tc, err)
		}
		want := onDisk[min(tc.off, len(onDisk)):min(tc.off+tc.n, len(onDisk))]
		if n != len(want) || !bytes.Equal(buf[:n], want) {
			t.Errorf("read %+v: %d bytes, want %d (equal %v)", tc, n, len(want), bytes.Equal(buf[:n], want))
		}
		if wantEOF := tc.off+tc.n >= len(onDisk); eof != wantEOF {
			t.Errorf("read %+v: eof %v, want %v", tc, eof, wantEOF)
		}
	}
	// The server checks permissions itself: uid 2000 may not write.
	other := backend.Cred{UID: 2000, GID: 2000}
	if _, _, err := o.Write(ctx, other, h, []byte("x"), 0, backend.FileSync); !errors.Is(err, backend.ErrAccess) && !errors.Is(err, backend.ErrPerm) {
		t.Errorf("write by another user: %v, want ErrAccess", err)
	}
}

func TestGaneshaNonASCIINames(t *testing.T) {
	g := startGanesha(t)
	o, local := g.newOrigin(t)
	ctx := t.Context()
	root, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"héllo wörld", "日本語.txt", "emoji-✓", "bad-utf8-\xff\xfe"}
	for _, n := range names {
		if _, _, err := o.Create(ctx, rootCred, root, n, backend.CreateArgs{Mode: backend.CreateGuarded}); err != nil {
			t.Fatalf("create %q: %v", n, err)
		}
		if _, err := os.Stat(filepath.Join(local, n)); err != nil {
			t.Errorf("%q not at the origin: %v", n, err)
		}
	}
	seen := map[string]bool{}
	if err := o.ReadDir(ctx, rootCred, root, func(de backend.DirEntry) bool { seen[de.Name] = true; return true }); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !seen[n] {
			t.Errorf("ReadDir misses %q (saw %v)", n, seen)
		}
	}
}

func TestGaneshaOutageIsRetryableAndRecovers(t *testing.T) {
	g := startGanesha(t)
	o, _ := g.newOrigin(t)
	ctx := t.Context()
	root, _, err := o.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.stop(t)
	if _, err := o.GetAttr(ctx, rootCred, root); !backend.IsRetryable(err) {
		t.Fatalf("GetAttr with the origin down: %v, want a retryable error", err)
	}
	g.start(t)
	// The client re-makes its connections by itself (with backoff).
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := o.WaitConnected(wctx); err != nil {
		t.Fatalf("no reconnection after the origin came back: %v", err)
	}
	if !o.Up() {
		t.Error("Up() false after WaitConnected")
	}
	a, err := o.GetAttr(ctx, rootCred, root)
	if err != nil {
		t.Fatalf("GetAttr after the origin came back: %v", err)
	}
	if a.Type != backend.TypeDirectory {
		t.Errorf("root type %v", a.Type)
	}
}

func TestGaneshaPrivilegedPortAndRootParent(t *testing.T) {
	g := startGanesha(t)
	sub := "priv"
	if err := os.Mkdir(filepath.Join(g.dir, sub), 0o777); err != nil {
		t.Fatal(err)
	}
	o, err := nfs.New(t.Context(), g.url(sub)+"&privport=true&conns=1", nfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	}()
	root, ra, err := o.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ss", "-Htn", "state", "established", "dport", "= :"+strconv.Itoa(g.port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var local string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "127.0.0.1:") && f != "127.0.0.1:"+strconv.Itoa(g.port) {
			local = f
		}
	}
	port, err := strconv.Atoi(strings.TrimPrefix(local, "127.0.0.1:"))
	if err != nil || port >= 1024 {
		t.Errorf("source port of the NFS connection %q, want < 1024 (ss: %q)", local, out)
	}
	// ".." of the origin's root stays at the root, although the export is
	// a subdirectory of what the server exports.
	_, pa, err := o.Lookup(t.Context(), rootCred, root, "..")
	if err != nil {
		t.Fatal(err)
	}
	if pa.FileID != ra.FileID {
		t.Errorf("\"..\" of the root is fileid %d, want the root's %d", pa.FileID, ra.FileID)
	}
}
