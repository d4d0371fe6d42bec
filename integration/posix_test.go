//go:build integration

package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestPOSIXWorkloadMatchesGanesha runs workloads/posix.sh in the guest (Linux
// kernel NFSv3 client) against nfs-ganesha and against nascache, each serving
// a fresh local directory, and requires identical transcripts; then it
// re-verifies every checksum, owner and mode at the origin directories.
func TestPOSIXWorkloadMatchesGanesha(t *testing.T) {
	requireGuest(t)
	requireRoot(t)
	var ganesha, nascache []string
	// The two runs are independent guests (one vCPU each): run them side by
	// side; "servers" returns when both are done.
	t.Run("servers", func(t *testing.T) {
		t.Run("ganesha", func(t *testing.T) {
			t.Parallel()
			origin := t.TempDir()
			srv := startGanesha(t, origin)
			ganesha = runPOSIXWorkload(t, srv, origin)
		})
		t.Run("nascache", func(t *testing.T) {
			t.Parallel()
			origin := t.TempDir()
			p := startNascache(t, localExport("/data", origin))
			nascache = runPOSIXWorkload(t, p.server("/data"), origin)
		})
	})
	if t.Failed() || ganesha == nil || nascache == nil {
		return // a subtest failed or was skipped and said why
	}
	if d := diffLines(ganesha, nascache); d != "" {
		t.Errorf("transcripts differ (- ganesha, + nascache):\n%s", d)
	} else {
		t.Logf("transcripts identical: %d checks", len(nascache))
	}
}

// runPOSIXWorkload runs posix.sh against srv, whose origin directory is
// origin, checks the run on its own and returns its transcript.
func runPOSIXWorkload(t *testing.T, srv nfsServer, origin string) []string {
	t.Helper()
	lines, rc := runGuest(t, srv, guestRun{Script: "posix.sh", InHost: true})
	if rc != 0 {
		t.Fatalf("posix.sh exit code %d", rc)
	}
	tr := prefixed(lines, "T ")
	if len(tr) == 0 || tr[len(tr)-1] != "end" {
		t.Fatalf("transcript incomplete (%d lines, no final \"end\")", len(tr))
	}
	for _, l := range tr {
		if strings.Contains(l, " FAIL") {
			t.Errorf("workload check failed: %s", l)
		}
	}
	verifyManifestAtOrigin(t, filepath.Join(origin, "posix"))
	verifyOwnersAtOrigin(t, filepath.Join(origin, "posix"))
	return tr
}

// verifyManifestAtOrigin re-checks, on the host, the SHA-256 of every file the
// guest wrote (dir/manifest.sha256, names relative to dir/files).
func verifyManifestAtOrigin(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "manifest.sha256"))
	if err != nil {
		t.Fatalf("manifest at origin: %v", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("manifest line %q", sc.Text())
		}
		if got := sha256File(t, filepath.Join(dir, "files", name)); got != sum {
			t.Errorf("origin %s: sha256 %s, the guest wrote %s", name, got, sum)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if n == 0 {
		t.Fatal("empty manifest at origin")
	}
	t.Logf("origin: %d checksums re-verified on the host", n)
}

// verifyOwnersAtOrigin checks that owner, group and mode (special bits
// included) seen by the guest are what the origin directory holds.
func verifyOwnersAtOrigin(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "owners"))
	if err != nil {
		t.Fatalf("owners at origin: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("owners line %q", line)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, f[0]), &st); err != nil {
			t.Errorf("origin %s: %v", f[0], err)
			continue
		}
		got := strconv.FormatUint(uint64(st.Uid), 10) + " " + strconv.FormatUint(uint64(st.Gid), 10) + " " +
			leftPad(strconv.FormatUint(uint64(st.Mode&0o7777), 8), 4)
		if want := strings.Join(f[1:], " "); got != want {
			t.Errorf("origin %s: uid gid mode %q, the guest saw %q", f[0], got, want)
		}
		n++
	}
	t.Logf("origin: owner/group/mode of %d entries match what the guest saw", n)
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// diffLines is a minimal line diff (LCS) for transcripts of a few hundred
// lines; "" if a and b are equal.
func diffLines(a, b []string) string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	same := true
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			sb.WriteString("+ " + b[j] + "\n")
			j++
			same = false
		default:
			sb.WriteString("- " + a[i] + "\n")
			i++
			same = false
		}
	}
	if same {
		return ""
	}
	return sb.String()
}
