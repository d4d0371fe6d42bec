//go:build integration

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

// TestCacheSmallerThanTree: the kernel client reads a 120 MiB tree twice
// through a 32 MiB cache; every checksum matches the host's, the chunk
// files never take more than the capacity on disk, and the cache evicted.
//
// The chunk store gets a tmpfs of its own (chunkDisk): its used pages,
// read with one statfs, are what the chunk files hold at that instant,
// including temp files and unlinked files that readers still have open;
// and since the tmpfs is exactly the capacity (plus the store's FORMAT
// and LOCK files), any instant over the capacity is an ENOSPC that the
// node logs. The test samples the usage for the peak, looks for ENOSPC
// in the log, and at the end compares the usage with the store's own
// account.
func TestCacheSmallerThanTree(t *testing.T) {
	requireGuest(t)
	origin := t.TempDir()
	if err := os.Mkdir(filepath.Join(origin, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	const files = 120
	want := make(map[string]string, files)
	for i := range files {
		name := fmt.Sprintf("f%03d", i)
		want[name] = writeRandomFile(t, filepath.Join(origin, "tree", name), mib+int64(i)*517, uint64(100+i))
	}
	const capacity = 32 * mib
	n := newCacheNode(t, "32MiB", cacheLocal("/data", origin, "strict"))
	disk := mountChunkDisk(t, n, capacity)
	n.launch()
	disk.limitToCapacity(t, capacity)
	stop := disk.sample(t)
	lines, rc := runGuest(t, n.server("/data"), guestRun{Script: "cache_tree.sh"})
	peak, samples := stop()
	if rc != 0 {
		t.Fatalf("cache_tree.sh exit code %d", rc)
	}
	got := map[string]int{}
	for _, l := range prefixed(lines, "SUM ") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Errorf("bad line %q", l)
			continue
		}
		got[f[0]]++
		if f[2] != want[f[1]] {
			t.Errorf("pass %s: %s sha256 %s, want %s", f[0], f[1], f[2], want[f[1]])
		}
	}
	if got["1"] != files || got["2"] != files {
		t.Errorf("checksums per pass = %v, want %d each", got, files)
	}
	st := n.status()
	if st.Cache.CapacityBytes != capacity {
		t.Errorf("capacity_bytes = %d, want %d", st.Cache.CapacityBytes, capacity)
	}
	final, err := disk.chunkBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chunk files on disk: peak %d over %d samples, final %d, capacity %d; store says %d cached",
		peak, samples, final, capacity, st.Cache.CachedBytes)
	if peak == 0 {
		t.Errorf("no chunk was ever seen on disk under %s", disk.Dir)
	}
	if peak > capacity || final > capacity {
		t.Errorf("chunk files on disk reached %d bytes (final %d), capacity %d", peak, final, capacity)
	}
	// Any page over the capacity was refused by the tmpfs, and the Put
	// that asked for it failed.
	if logged, err := os.ReadFile(n.logPath); err != nil {
		t.Error(err)
	} else if k := bytes.Count(logged, []byte("no space left on device")); k > 0 {
		t.Errorf("the chunk disk, sized at the capacity, refused %d writes: the store went over its capacity", k)
	}
	// At rest every byte on disk is a cached chunk's charge (4 KiB blocks,
	// the tmpfs page). The node may still be storing a read-ahead chunk
	// when the guest ends, so give it a moment to settle.
	for deadline := time.Now().Add(5 * time.Second); final != st.Cache.CachedBytes && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		st = n.status()
		if final, err = disk.chunkBytes(); err != nil {
			t.Fatal(err)
		}
	}
	if final != st.Cache.CachedBytes {
		t.Errorf("at rest the chunk disk holds %d bytes but the store accounts for %d", final, st.Cache.CachedBytes)
	}
	if st.Cache.Evictions == 0 {
		t.Errorf("evictions = 0 after reading %d MiB twice through a %d-byte cache", files, capacity)
	}
}

// TestCacheFreshness rewrites a file at a local origin behind nascache
// while the guest (actimeo=0) reads it: a strict export serves the new
// content on the first read after the change, a ttl:2s export within a
// bounded poll, and no read ever mixes old and new chunks.
func TestCacheFreshness(t *testing.T) {
	requireGuest(t)
	const chunks = 4
	// chunk i of version v is filled with one byte, distinct per (v, i), so
	// that any mix of versions has a checksum that is neither whole file's.
	content := func(v byte) []byte {
		b := make([]byte, 0, chunks*mib)
		for i := range chunks {
			b = append(b, bytes.Repeat([]byte{v + byte(i)}, mib)...)
		}
		return b
	}
	hexsum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	oldData, newData := content(0x10), content(0x80)
	oldSum, newSum := hexsum(oldData), hexsum(newData)

	for _, tc := range []struct {
		name, consistency string
		firstMustBeNew    bool
	}{
		{"strict", "strict", true},
		{"ttl", "ttl:2s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin := t.TempDir()
			f := filepath.Join(origin, "f.bin")
			if err := os.WriteFile(f, oldData, 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(f, old, old); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(origin, "new.sha256"), []byte(newSum+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			phase := filepath.Join(origin, "phase")
			if err := os.WriteFile(phase, []byte("0"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(phase, old, old); err != nil {
				t.Fatal(err)
			}
			n := startCacheNode(t, "64MiB", cacheLocal("/data", origin, tc.consistency))
			rewritten := false
			onLine := func(line string) {
				if line != "STEP rewrite" {
					return
				}
				// Same size, new bytes in every chunk, new mtime.
				if err := os.WriteFile(f, newData, 0o644); err != nil {
					t.Errorf("rewrite: %v", err)
				}
				now := time.Now()
				if err := os.Chtimes(f, now, now); err != nil {
					t.Errorf("rewrite: %v", err)
				}
				// The guest learns of the rewrite from phase changing in
				// place, "0" to "1": a content change of a known file.
				// A marker file created at the origin is not usable under
				// ttl: the kernel client never saw such a new name (120 s
				// of polling, only GETATTRs reached nascache, no LOOKUP).
				if err := os.WriteFile(phase, []byte("1"), 0o644); err != nil {
					t.Errorf("phase: %v", err)
				}
				if err := os.Chtimes(phase, now, now); err != nil {
					t.Errorf("phase: %v", err)
				}
				rewritten = true
			}
			lines, rc := runGuest(t, n.server("/data"), guestRun{Script: "cache_fresh.sh", Opts: "actimeo=0", OnLine: onLine})
			if !rewritten {
				t.Fatal("the guest never reached the rewrite point")
			}
			for _, l := range prefixed(lines, "FAIL: ") {
				t.Errorf("guest: %s", l)
			}
			if rc != 0 {
				t.Fatalf("cache_fresh.sh exit code %d", rc)
			}
			if r := prefixed(lines, "READ1 "); len(r) != 1 || r[0] != oldSum {
				t.Errorf("first read = %v, want the old content %s", r, oldSum)
			}
			polls := prefixed(lines, "POLL ")
			if len(polls) == 0 || polls[len(polls)-1] != newSum {
				t.Fatalf("reads after the rewrite %v never gave the new content %s", polls, newSum)
			}
			for i, s := range polls {
				if s != oldSum && s != newSum {
					t.Errorf("read %d after the rewrite mixed old and new bytes: %s", i, s)
				}
			}
			if tc.firstMustBeNew && polls[0] != newSum {
				t.Errorf("%s: first read after the rewrite = %s (old %s), want the new content at once", tc.consistency, polls[0], oldSum)
			}
			t.Logf("%s: new content on read %d after the rewrite", tc.consistency, len(polls))
		})
	}
}

// TestCacheKill9DuringFill kills nascache with SIGKILL while libnfs reads a
// 256 MiB file through it (the cache half full), restarts it on the same
// data_dir and reads the file again: right bytes, and the cache kept
// chunks across the crash.
func TestCacheKill9DuringFill(t *testing.T) {
	requireTools(t, "nfs-cp")
	origin := t.TempDir()
	local := t.TempDir()
	const size = 256 * mib
	want := writeRandomFile(t, filepath.Join(origin, "big.bin"), size, 77)
	n := startCacheNode(t, "512MiB", cacheLocal("/data", origin, "strict"))
	url := n.server("/data").libnfsURL("big.bin")

	cp := exec.CommandContext(t.Context(), "nfs-cp", url, filepath.Join(local, "first.bin"))
	var out bytes.Buffer
	cp.Stdout, cp.Stderr = &out, &out
	if err := cp.Start(); err != nil {
		t.Fatalf("nfs-cp: %v", err)
	}
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Wait() }()
	// Bounded wait until part of the file is cached, then kill -9.
	deadline := time.Now().Add(120 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var cached int64
	for cached < 32*mib {
		select {
		case err := <-cpDone:
			t.Fatalf("nfs-cp finished (%v) before 32 MiB were cached (%d): the kill would not be during the fill\n%s", err, cached, out.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes cached after 120 s", cached)
		}
		if v, err := n.statusErr(); err == nil && v.Cache != nil {
			cached = v.Cache.CachedBytes
		}
	}
	n.kill9()
	// libnfs may retry against the dead server: bound its life too.
	var cpErr error
	select {
	case cpErr = <-cpDone:
	case <-time.After(10 * time.Second):
		_ = cp.Process.Kill()
		cpErr = <-cpDone
	}
	t.Logf("killed with %d bytes cached; nfs-cp: %v\n%s", cached, cpErr, out.String())

	n.start()
	after := n.status()
	t.Logf("after restart: cached_bytes %d", after.Cache.CachedBytes)
	dst := filepath.Join(local, "second.bin")
	if _, err := runTool(t, "nfs-cp", url, dst); err != nil {
		t.Fatalf("nfs-cp after restart: %v", err)
	}
	if got := sha256File(t, dst); got != want {
		t.Fatalf("read after kill -9 and restart: sha256 %s, want %s", got, want)
	}
	st := n.status()
	if st.Cache.CachedBytes == 0 {
		t.Errorf("cached_bytes = 0 after the second read")
	}
	if after.Cache.CachedBytes == 0 {
		t.Errorf("cached_bytes = 0 right after the restart: the cache did not survive kill -9")
	}
	if st.Cache.CacheBytesServed == 0 {
		t.Errorf("cache_bytes_served = 0: nothing was served from the chunks kept across kill -9")
	}
}

// TestWarmPinEvict warms and pins a small tree, reads a larger tree
// through the export that overflows the cache, and requires the pinned
// tree to stay whole: pinned bytes unchanged, and reading it again costs
// no origin bytes and gives the right bytes.
func TestWarmPinEvict(t *testing.T) {
	requireTools(t, "nfs-cp")
	origin := t.TempDir()
	local := t.TempDir()
	// Each tree is an export of its own: libnfs mounts the directory part
	// of a URL's path, so the files a URL names must sit at an export root.
	// Both exports share the node's one cache.
	sums := map[string]string{}
	mk := func(dir string, count int, seed uint64) []string {
		if err := os.Mkdir(filepath.Join(origin, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := range count {
			name := fmt.Sprintf("%s/f%02d", dir, i)
			sums[name] = writeRandomFile(t, filepath.Join(origin, name), mib+int64(i)*4099, seed+uint64(i))
			names = append(names, name)
		}
		return names
	}
	pinned := mk("pinned", 8, 500)
	other := mk("other", 48, 900)
	n := startCacheNode(t, "32MiB",
		cacheLocal("/pinned", filepath.Join(origin, "pinned"), "strict"),
		cacheLocal("/other", filepath.Join(origin, "other"), "strict"))
	read := func(name string) {
		dir, file, _ := strings.Cut(name, "/")
		dst := filepath.Join(local, dir+"_"+file)
		if _, err := runTool(t, "nfs-cp", n.server("/"+dir).libnfsURL(file), dst); err != nil {
			t.Fatalf("nfs-cp %s: %v", name, err)
		}
		if got := sha256File(t, dst); got != sums[name] {
			t.Errorf("%s: sha256 %s, want %s", name, got, sums[name])
		}
		if err := os.Remove(dst); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := runTool(t, n.bin, "warm", "--config", n.cfgPath, "--pin", "/pinned"); err != nil {
		t.Fatalf("nascache warm --pin: %v", err)
	}
	warmed := n.status()
	if warmed.Cache.PinnedBytes < 8*mib {
		t.Fatalf("pinned_bytes = %d after warming 8 MiB with --pin", warmed.Cache.PinnedBytes)
	}
	for _, name := range other {
		read(name)
	}
	scanned := n.status()
	if scanned.Cache.Evictions == 0 {
		t.Errorf("evictions = 0: the 48 MiB scan did not overflow the 32 MiB cache")
	}
	if scanned.Cache.PinnedBytes != warmed.Cache.PinnedBytes {
		t.Errorf("pinned_bytes %d after the scan, %d before", scanned.Cache.PinnedBytes, warmed.Cache.PinnedBytes)
	}
	if scanned.Cache.CachedBytes > scanned.Cache.CapacityBytes {
		t.Errorf("cached_bytes %d > capacity %d", scanned.Cache.CachedBytes, scanned.Cache.CapacityBytes)
	}
	for _, name := range pinned {
		read(name)
	}
	final := n.status()
	if final.Cache.OriginBytesServed != scanned.Cache.OriginBytesServed {
		t.Errorf("reading the pinned tree again took %d bytes from the origin",
			final.Cache.OriginBytesServed-scanned.Cache.OriginBytesServed)
	}
	if final.Cache.CacheBytesServed-scanned.Cache.CacheBytesServed < 8*mib {
		t.Errorf("only %d bytes of the pinned tree were served from the cache",
			final.Cache.CacheBytesServed-scanned.Cache.CacheBytesServed)
	}
}

// TestCacheCorruptChunkRefetched damages chunk files on the node's disk
// behind its back (a flipped data byte, a flipped header byte, a file cut
// short) and reads the file again with libnfs: every byte must be right
// (the damaged chunks are detected by their checksums, dropped and fetched
// again from the origin), and the node must count them.
func TestCacheCorruptChunkRefetched(t *testing.T) {
	requireTools(t, "nfs-cp")
	origin := t.TempDir()
	local := t.TempDir()
	const size = 8 * mib
	want := writeRandomFile(t, filepath.Join(origin, "f.bin"), size, 91)
	n := startCacheNode(t, "64MiB", cacheLocal("/data", origin, "strict"))
	url := n.server("/data").libnfsURL("f.bin")
	if _, err := runTool(t, "nfs-cp", url, filepath.Join(local, "first.bin")); err != nil {
		t.Fatalf("first read: %v", err)
	}
	if got := sha256File(t, filepath.Join(local, "first.bin")); got != want {
		t.Fatalf("first read: sha256 %s, want %s", got, want)
	}
	// Wait (bounded) for the 8 chunks the first read stored.
	var chunks []string
	deadline := time.Now().Add(30 * time.Second)
	for len(chunks) < size/mib {
		var err error
		chunks, err = filepath.Glob(filepath.Join(n.ccfg.DataDir, "chunks", "chunks", "*", "*"))
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunk files after the first read, want %d", len(chunks), size/mib)
		}
		time.Sleep(50 * time.Millisecond)
	}
	damage := []struct {
		what string
		fn   func(f *os.File) error
	}{
		{"data byte flipped", func(f *os.File) error { return flipByte(f, 64+12345) }},
		{"header byte flipped", func(f *os.File) error { return flipByte(f, 40) }},
		{"file cut short", func(f *os.File) error { return f.Truncate(64 + 1000) }},
		{"last data byte flipped", func(f *os.File) error { return flipByte(f, 64+mib-1) }},
	}
	for i, d := range damage {
		f, err := os.OpenFile(chunks[i], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.fn(f); err != nil {
			t.Fatalf("%s: %v", d.what, err)
		}
		f.Close()
		t.Logf("%s: %s", d.what, chunks[i])
	}
	before := n.status()
	if _, err := runTool(t, "nfs-cp", url, filepath.Join(local, "second.bin")); err != nil {
		t.Fatalf("read after the damage: %v", err)
	}
	if got := sha256File(t, filepath.Join(local, "second.bin")); got != want {
		t.Fatalf("read after the damage: sha256 %s, want %s: a damaged chunk was served", got, want)
	}
	after := n.status()
	if got := after.Cache.CorruptChunks - before.Cache.CorruptChunks; got != int64(len(damage)) {
		t.Errorf("corrupt_chunks went up by %d, want %d", got, len(damage))
	}
	if got := after.Cache.OriginBytesServed - before.Cache.OriginBytesServed; got != int64(len(damage))*mib {
		t.Errorf("origin served %d bytes on the second read, want %d (the damaged chunks only)", got, len(damage)*mib)
	}
	// A third read is served wholly from the cache: the refetched chunks
	// were stored again, whole.
	if _, err := runTool(t, "nfs-cp", url, filepath.Join(local, "third.bin")); err != nil {
		t.Fatalf("third read: %v", err)
	}
	if got := sha256File(t, filepath.Join(local, "third.bin")); got != want {
		t.Fatalf("third read: sha256 %s, want %s", got, want)
	}
	final := n.status()
	if final.Cache.OriginBytesServed != after.Cache.OriginBytesServed || final.Cache.CorruptChunks != after.Cache.CorruptChunks {
		t.Errorf("third read: origin bytes %d -> %d, corrupt %d -> %d; want it all from the cache",
			after.Cache.OriginBytesServed, final.Cache.OriginBytesServed, after.Cache.CorruptChunks, final.Cache.CorruptChunks)
	}
}

// flipByte inverts the byte at off of f.
func flipByte(f *os.File, off int64) error {
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err := f.WriteAt(b, off)
	return err
}
