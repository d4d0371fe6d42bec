package chunkstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rs/zerolog"
)

const crashDirEnv = "CHUNKSTORE_CRASH_DIR"

// crashChunkSize varies with the index so that chunk files of several
// sizes are in flight when the writer dies.
func crashChunkSize(i uint64) int { return 1000 + int(i%7)*9000 }

// TestKill9DuringFill kills a writer process with SIGKILL while it fills a
// store (with evictions) and checks that the reopened store holds only
// whole chunks, including every chunk whose Put had returned.
func TestKill9DuringFill(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the writer process")
	}
	cfg := testConfig(t, 512<<10)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+cfg.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The writer prints the index of each chunk after its Put returned.
	// Kill it after a while, in the middle of its loop.
	const acked = 200
	lines := bufio.NewScanner(out)
	var last uint64
	for n := 0; n < acked; n++ {
		if !lines.Scan() {
			t.Fatalf("writer stopped early: %v", lines.Err())
		}
		last, err = strconv.ParseUint(lines.Text(), 10, 64)
		if err != nil {
			t.Fatalf("writer said %q", lines.Text())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Lines still in the pipe were acknowledged before the kill too. Each
	// is one write of a few bytes, so none is torn.
	for lines.Scan() {
		if i, err := strconv.ParseUint(lines.Text(), 10, 64); err == nil {
			last = i
		}
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("writer exited normally; it should have been killed")
	}

	s := openStore(t, cfg)
	st := s.Stats()
	if st.Chunks == 0 {
		t.Fatal("nothing survived the crash")
	}
	// Every chunk the store lists is whole and right.
	for i := uint64(0); i <= last+64; i++ {
		k := testKey(1, i)
		if !s.Contains(k) {
			continue
		}
		mustGetEqual(t, s, k, payload(k, crashChunkSize(i)))
	}
	// The most recently acknowledged chunks are still there: they were the
	// newest when the writer died, and a process crash loses no page cache.
	for i := last - 3; i <= last; i++ {
		k := testKey(1, i)
		mustGetEqual(t, s, k, payload(k, crashChunkSize(i)))
	}
	if st := s.Stats(); st.Corrupt != 0 {
		t.Fatalf("%d corrupt chunks after kill -9", st.Corrupt)
	}
	checkQuiescent(t, s)
}

// TestCrashWriterProcess is the writer half of TestKill9DuringFill; it
// does nothing unless started by it.
func TestCrashWriterProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as the writer process of TestKill9DuringFill")
	}
	cfg := testConfig(t, 512<<10)
	cfg.Dir = dir
	s, err := Open(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := uint64(0); ; i++ {
		k := testKey(1, i)
		if err := s.Put(context.Background(), k, payload(k, crashChunkSize(i))); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(w, i)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}
