package chunkstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func benchStore(b *testing.B, capacity int64, sync SyncPolicy) *Store {
	cfg := DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.CapacityBytes = capacity
	cfg.MaxChunkBytes = 4 * mib
	cfg.Sync = sync
	return openStore(b, cfg)
}

// BenchmarkPut1MiB: steady-state fill of 1 MiB chunks into a full store
// (every Put evicts one chunk).
func BenchmarkPut1MiB(b *testing.B) {
	for _, sync := range []SyncPolicy{SyncNone, SyncData} {
		b.Run("sync="+sync.String(), func(b *testing.B) {
			s := benchStore(b, 64*mib, sync)
			data := payload(testKey(1, 0), mib)
			ctx := context.Background()
			b.SetBytes(mib)
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				if err := s.Put(ctx, testKey(1, i), data); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkGet1MiB: hits of 1 MiB chunks (from the page cache) into a
// reused buffer, checksum included.
func BenchmarkGet1MiB(b *testing.B) {
	s, keys := filledStore(b, 32)
	ctx := context.Background()
	buf := make([]byte, 0, mib)
	b.SetBytes(mib)
	b.ReportAllocs()
	i := 0
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := s.Get(ctx, keys[i%len(keys)], buf[:0]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report()
}

// BenchmarkGet1MiBParallel: the same with GOMAXPROCS readers.
func BenchmarkGet1MiBParallel(b *testing.B) {
	s, keys := filledStore(b, 32)
	ctx := context.Background()
	b.SetBytes(mib)
	b.ReportAllocs()
	cpu := startCPU(b)
	defer cpu.report()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, mib)
		i := 0
		for pb.Next() {
			if _, err := s.Get(ctx, keys[i%len(keys)], buf[:0]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkReadAt128KiB: a 128 KiB read from a 1 MiB chunk (the whole
// chunk is read and verified, then the range copied).
func BenchmarkReadAt128KiB(b *testing.B) {
	s, keys := filledStore(b, 32)
	ctx := context.Background()
	p := make([]byte, 128<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	i := 0
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := s.ReadAt(ctx, keys[i%len(keys)], p, 256<<10); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report()
}

// smallFile is the size of an ImageNet-like file of the issue 5
// benchmark: one chunk per file, read whole.
const smallFile = 110 << 10

// BenchmarkReadAt110KiB: a warm read of a small file, the chunk cache hit
// of cachefs: ReadAt of a whole 110 KiB chunk into a buffer of its size,
// over 512 chunks (distinct files), checksum included. cpu-ns/op is the
// process's user+system CPU per read, which the neighbours' load on a
// shared machine changes far less than the wall time.
func BenchmarkReadAt110KiB(b *testing.B) {
	s, keys := filledStoreOf(b, 512, smallFile, DefaultOpenFiles)
	benchReadWhole(b, s, keys, smallFile)
}

// BenchmarkReadAt110KiBUncached: the same with no open-file cache, so
// every read opens (relative to the chunks directory) and closes its
// chunk: the cost of a hit whose descriptor is not cached.
func BenchmarkReadAt110KiBUncached(b *testing.B) {
	s, keys := filledStoreOf(b, 512, smallFile, 0)
	benchReadWhole(b, s, keys, smallFile)
}

// benchReadWhole reads the chunks of keys, size bytes each, whole, in
// turn.
func benchReadWhole(b *testing.B, s *Store, keys []Key, size int) {
	ctx := context.Background()
	p := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	i := 0
	cpu := startCPU(b)
	for b.Loop() {
		if _, err := s.ReadAt(ctx, keys[i%len(keys)], p, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report()
}

// BenchmarkReadAt110KiBParallel: the same with GOMAXPROCS readers.
func BenchmarkReadAt110KiBParallel(b *testing.B) {
	s, keys := filledStoreOf(b, 512, smallFile, DefaultOpenFiles)
	ctx := context.Background()
	b.SetBytes(smallFile)
	b.ReportAllocs()
	var next atomic.Uint64
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, smallFile)
		i := next.Add(97)
		for pb.Next() {
			if _, err := s.ReadAt(ctx, keys[i%uint64(len(keys))], p, 0); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	cpu.report()
}

func filledStore(b *testing.B, n int) (*Store, []Key) {
	return filledStoreOf(b, n, mib, DefaultOpenFiles)
}

// filledStoreOf is a store holding n chunks of size bytes, caching up to
// openFiles descriptors.
func filledStoreOf(b *testing.B, n, size, openFiles int) (*Store, []Key) {
	cfg := DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.CapacityBytes = int64(n+1) * int64(size+4096)
	cfg.MaxChunkBytes = 4 * mib
	cfg.OpenFiles = openFiles
	s := openStore(b, cfg)
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = testKey(2, uint64(i))
		mustPut(b, s, keys[i], payload(keys[i], size))
	}
	return s, keys
}

// cpuMeter measures the process's CPU time over a benchmark loop.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

// startCPU starts measuring; call it just before the loop.
func startCPU(b *testing.B) cpuMeter { return cpuMeter{b: b, start: cpuTime(b)} }

// report adds the CPU time per operation (cpu-ns/op) to the results.
func (m cpuMeter) report() {
	if m.b.N > 0 {
		m.b.ReportMetric(float64((cpuTime(m.b)-m.start).Nanoseconds())/float64(m.b.N), "cpu-ns/op")
	}
}

// BenchmarkOpen measures the index rebuild of Open for a store of many
// chunks (200,000 by default; CHUNKSTORE_BENCH_CHUNKS overrides). The
// files are made directly, not through Put, to keep the set-up short;
// their data is tiny since Open does not read it.
func BenchmarkOpen(b *testing.B) {
	n := 200000
	if v := os.Getenv("CHUNKSTORE_BENCH_CHUNKS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, verify := range []bool{false, true} {
		b.Run(fmt.Sprintf("chunks=%d/verify=%v", n, verify), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Dir = b.TempDir()
			cfg.CapacityBytes = int64(n) * 4096
			cfg.VerifyHeadersOnOpen = verify
			s, err := Open(cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			for f := range fanoutDirs {
				if err := os.Mkdir(filepath.Join(cfg.Dir, chunksDir, fanoutName(f)), 0o700); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				k := testKey(uint64(i/16), uint64(i%16))
				p := filepath.Join(cfg.Dir, k.relPath())
				if err := os.WriteFile(p, chunkFile(k, []byte{byte(i)}), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time is reported besides wall time: on a shared machine it
			// is the figure that does not depend on the neighbours' load.
			cpuBefore := cpuTime(b)
			b.ResetTimer()
			for b.Loop() {
				s, err := Open(cfg, zerolog.Nop())
				if err != nil {
					b.Fatal(err)
				}
				if st := s.Stats(); st.Chunks != n {
					b.Fatalf("opened %d chunks, want %d", st.Chunks, n)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpuBefore).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is the user + system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
