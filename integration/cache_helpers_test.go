//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nascache/nascache/chunkstore/chunkstoretest"
)

// cacheExport is an export with the data cache's consistency key.
type cacheExport struct {
	ncExport    `yaml:",inline"`
	Consistency string `yaml:"consistency,omitempty"`
}

// cacheConfig is ncConfig plus the data cache's keys.
type cacheConfig struct {
	Listen            string        `yaml:"listen"`
	AdminListen       string        `yaml:"admin_listen"`
	DataDir           string        `yaml:"data_dir"`
	CacheSize         string        `yaml:"cache_size"`
	ChunkSize         string        `yaml:"chunk_size,omitempty"`
	OriginConcurrency int           `yaml:"origin_concurrency,omitempty"`
	Exports           []cacheExport `yaml:"exports"`
}

// cacheStatusView is the part of GET /v1/status the cache tests read.
type cacheStatusView struct {
	Cache *struct {
		CachedBytes       int64 `json:"cached_bytes"`
		CapacityBytes     int64 `json:"capacity_bytes"`
		PinnedBytes       int64 `json:"pinned_bytes"`
		Evictions         int64 `json:"evictions"`
		CorruptChunks     int64 `json:"corrupt_chunks"`
		Hits              int64 `json:"hits"`
		Misses            int64 `json:"misses"`
		CacheBytesServed  int64 `json:"cache_bytes_served"`
		OriginBytesServed int64 `json:"origin_bytes_served"`
	} `json:"cache"`
}

// cacheNode is a nascache process with a data cache. It reuses
// nascacheProc for the process (stop, kill9, log tail), but writes its own
// config with the cache keys.
type cacheNode struct {
	*nascacheProc
	ccfg cacheConfig
}

// startCacheNode starts nascache with a data cache of cacheSize (chunk
// size 1 MiB) over exports; it is stopped in t.Cleanup.
func startCacheNode(t *testing.T, cacheSize string, exports ...cacheExport) *cacheNode {
	t.Helper()
	n := newCacheNode(t, cacheSize, exports...)
	n.launch()
	return n
}

// newCacheNode prepares what startCacheNode starts, so that a test can
// set up data_dir (a mount, say) before launch.
func newCacheNode(t *testing.T, cacheSize string, exports ...cacheExport) *cacheNode {
	t.Helper()
	bin := requireNascache(t)
	dir := t.TempDir()
	port := freePort(t)
	n := &cacheNode{
		nascacheProc: &nascacheProc{
			t: t, bin: bin, port: port,
			cfgPath: filepath.Join(dir, "nascache.yaml"),
			logPath: filepath.Join(dir, "nascache.log"),
		},
		ccfg: cacheConfig{
			Listen:      fmt.Sprintf("127.0.0.1:%d", port),
			AdminListen: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			DataDir:     filepath.Join(dir, "data"),
			CacheSize:   cacheSize,
			ChunkSize:   "1MiB",
			Exports:     exports,
		},
	}
	n.nascacheProc.cfg.AdminListen = n.ccfg.AdminListen // read by start's readiness wait
	return n
}

// launch starts the node made by newCacheNode and stops it in t.Cleanup
// (so before the cleanups of anything set up before launch).
func (n *cacheNode) launch() {
	t := n.t
	t.Helper()
	n.start()
	t.Cleanup(func() {
		n.stop()
		if data, err := os.ReadFile(n.logPath); err == nil && bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			t.Errorf("nascache (built with -race) reported a data race; see %s", n.logPath)
		}
		if t.Failed() {
			n.logTail(60)
		}
	})
}

// start writes the cache config and starts nascache (the harness's start
// writes ncConfig, which has no cache keys); it returns once /healthz and
// /v1/status answer, and fails the test if nascache exits first.
func (n *cacheNode) start() {
	t := n.t
	t.Helper()
	data, err := yaml.Marshal(n.ccfg)
	if err != nil {
		t.Fatalf("nascache config: %v", err)
	}
	if err := os.WriteFile(n.cfgPath, data, 0o644); err != nil {
		t.Fatalf("nascache config: %v", err)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("nascache log: %v", err)
	}
	cmd := exec.Command(n.bin, "serve", "--config", n.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start nascache: %v", err)
	}
	p := n.nascacheProc
	p.cmd, p.exited, p.waitErr = cmd, make(chan struct{}), nil
	go func(exited chan struct{}) {
		err := cmd.Wait()
		logf.Close()
		p.waitErr = err
		close(exited)
	}(p.exited)
	t.Logf("nascache pid %d: 127.0.0.1:%d, config:\n%s", cmd.Process.Pid, n.port, data)
	deadline := time.Now().Add(serverStartLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := n.statusErr(); err == nil {
			return
		}
		select {
		case <-p.exited:
			n.logTail(40)
			t.Fatalf("nascache exited during start-up: %v", p.waitErr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			n.logTail(40)
			t.Fatalf("nascache not ready within %v", serverStartLimit)
		}
	}
}

func (n *cacheNode) statusErr() (cacheStatusView, error) {
	var v cacheStatusView
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.ccfg.AdminListen + "/healthz")
	if err != nil {
		return v, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("healthz: %s", resp.Status)
	}
	resp, err = c.Get("http://" + n.ccfg.AdminListen + "/v1/status")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("status: %s", resp.Status)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// status runs `nascache status --config FILE --json` (the CLI, as an
// operator would) and decodes it; the node must have a data cache.
func (n *cacheNode) status() cacheStatusView {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(n.t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.bin, "status", "--config", n.cfgPath, "--json").Output()
	if err != nil {
		n.t.Fatalf("nascache status: %v", err)
	}
	var v cacheStatusView
	if err := json.Unmarshal(out, &v); err != nil {
		n.t.Fatalf("nascache status: %v\n%s", err, out)
	}
	if v.Cache == nil {
		n.t.Fatalf("nascache status: no cache section:\n%s", out)
	}
	n.t.Logf("status: %+v", *v.Cache)
	return v
}

// chunkDisk is the file system of a node's chunk store: a tmpfs of its
// own mounted on data_dir/chunks, so that its used pages are the chunk
// store's and nothing else's. Why this measures the capacity bound
// honestly:
//
//   - One statfs reads the tmpfs's count of allocated pages at one
//     instant. A walk over the chunk files (st_blocks per file) cannot:
//     it takes long enough for a chunk to be counted before its unlink
//     and its replacement after, a sum that never existed.
//   - The count includes what a walk cannot see: files unlinked while a
//     reader still has them open (their pages are freed at the last
//     close) and temp files being written.
//   - Sampling can miss a short peak, so the tmpfs is also sized at
//     exactly the capacity plus the store's own FORMAT/LOCK files
//     (measured once the node has started, before anything is cached):
//     the kernel checks the size at every page it allocates, so any
//     instant over the capacity is a write that fails with ENOSPC, which
//     the node logs ("chunk not cached ... no space left on device") and
//     the test looks for.
type chunkDisk struct {
	*chunkstoretest.Tmpfs
	baseBytes int64 // the store's bookkeeping files, not chunk data
}

// mountChunkDisk mounts a tmpfs on n's chunk directory; call it before
// n.launch. It is as large as capacityBytes plus headroom until
// limitToCapacity.
func mountChunkDisk(t *testing.T, n *cacheNode, capacityBytes int64) *chunkDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "this test mounts a tmpfs for the chunk store and needs root")
	}
	dir := filepath.Join(n.ccfg.DataDir, "chunks")
	return &chunkDisk{Tmpfs: chunkstoretest.MountTmpfs(t, dir, capacityBytes+16*mib)}
}

// limitToCapacity records what the empty store takes and shrinks the
// tmpfs to capacityBytes plus that; call it after launch, before any
// read.
func (d *chunkDisk) limitToCapacity(t *testing.T, capacityBytes int64) {
	t.Helper()
	base, err := d.UsedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if base > 4*chunkstoretest.PageBytes() {
		t.Fatalf("the empty chunk store takes %d bytes; expected only its FORMAT and LOCK files", base)
	}
	d.baseBytes = base
	if err := d.Resize(capacityBytes + base); err != nil {
		t.Fatal(err)
	}
	t.Logf("chunk tmpfs %s: %d bytes = capacity %d + %d for FORMAT/LOCK", d.Dir, capacityBytes+base, capacityBytes, base)
}

// chunkBytes is what the chunk files take at this instant.
func (d *chunkDisk) chunkBytes() (int64, error) {
	used, err := d.UsedBytes()
	return used - d.baseBytes, err
}

// sample reads chunkBytes every 5 ms until the returned stop is called,
// which returns the largest reading and how many readings were taken.
func (d *chunkDisk) sample(t *testing.T) (stop func() (peak int64, samples int)) {
	t.Helper()
	done := make(chan struct{})
	type result struct {
		peak    int64
		samples int
	}
	out := make(chan result, 1)
	go func() {
		var r result
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := d.chunkBytes(); err == nil {
				r.peak = max(r.peak, b)
				r.samples++
			}
			select {
			case <-done:
				out <- r
				return
			case <-tick.C:
			}
		}
	}()
	var r result
	stopOnce := sync.OnceFunc(func() { close(done); r = <-out })
	t.Cleanup(stopOnce) // if the test ends before it calls stop
	return func() (int64, int) { stopOnce(); return r.peak, r.samples }
}

// cacheLocal is a loopback export of dir with the given consistency.
func cacheLocal(path, dir, consistency string) cacheExport {
	return cacheExport{ncExport: localExport(path, dir), Consistency: consistency}
}
