//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"
)

const bigDirEntries = 100_000

// TestHundredThousandEntryDirectory creates a directory of 100,000 entries
// directly at the origin and lists it through nascache with the kernel client
// (workloads/bigdir.sh): `ls` (READDIR) and `ls -l` (READDIRPLUS) must each see
// every entry exactly once, with the right names and sizes.
func TestHundredThousandEntryDirectory(t *testing.T) {
	requireGuest(t)
	origin := t.TempDir()
	dir := filepath.Join(origin, "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Entry i is "entry-%06d" with i%7 bytes (so that sizes are checked too);
	// zero-padded names sort in creation order.
	name := func(i int) string { return fmt.Sprintf("entry-%06d", i) }
	var g errgroup.Group
	const workers = 4
	for w := range workers {
		g.Go(func() error {
			for i := w; i < bigDirEntries; i += workers {
				if err := os.WriteFile(filepath.Join(dir, name(i)), []byte(strings.Repeat("x", i%7)), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("create entries at the origin: %v", err)
	}
	names := sha256.New()
	var totalSize int
	for i := range bigDirEntries {
		names.Write([]byte(name(i) + "\n"))
		totalSize += i % 7
	}
	wantSHA := hex.EncodeToString(names.Sum(nil))

	p := startNascache(t, localExport("/data", origin))
	lines, rc := runGuest(t, p.server("/data"), guestRun{Script: "bigdir.sh"})
	if rc != 0 {
		t.Fatalf("bigdir.sh exit code %d", rc)
	}
	want := map[string]string{
		"COUNT ls ":   fmt.Sprint(bigDirEntries),
		"SHA ls ":     wantSHA,
		"COUNT ls-l ": fmt.Sprint(bigDirEntries),
		"SIZES ls-l ": fmt.Sprint(totalSize),
	}
	for prefix, w := range want {
		got := prefixed(lines, prefix)
		if len(got) != 1 || got[0] != w {
			t.Errorf("guest %q = %q, want %q", strings.TrimSpace(prefix), got, w)
		}
	}
}
