//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
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
	return n
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

// chunkDiskBytes is what the chunk files under data_dir/chunks take on
// disk: the allocated blocks of every regular file in chunks/ and tmp/
// (the store's bookkeeping files FORMAT and LOCK are not chunk data).
func chunkDiskBytes(dataDir string) (int64, error) {
	var total int64
	for _, sub := range []string{"chunks", "tmp"} {
		root := filepath.Join(dataDir, "chunks", sub)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) { // a chunk unlinked under us, or no dir yet
					return nil
				}
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			total += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

// sampleChunkDisk samples chunkDiskBytes every 100 ms until the returned
// stop is called, which returns the largest sample.
func sampleChunkDisk(t *testing.T, dataDir string) (stop func() int64) {
	t.Helper()
	done := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := chunkDiskBytes(dataDir); err == nil {
				peak = max(peak, b)
			}
			select {
			case <-done:
				result <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 { close(done); return <-result }
}

// cacheLocal is a loopback export of dir with the given consistency.
func cacheLocal(path, dir, consistency string) cacheExport {
	return cacheExport{ncExport: localExport(path, dir), Consistency: consistency}
}
