//go:build integration

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runTool runs a host command with a bounded lifetime and returns its
// combined output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ %s %s (err=%v)\n%s", name, strings.Join(args, " "), err, strings.TrimRight(out.String(), "\n"))
	return out.String(), err
}

// TestLibnfsAgainstNascache uses Debian's libnfs-utils (a user-space NFSv3
// client, no kernel involved) against nascache: nfs-cp uploads a 64 MiB file
// (compared byte for byte at the origin), nfs-ls lists it with its size, and
// nfs-cp downloads both it and a file created at the origin (compared on the
// host).
func TestLibnfsAgainstNascache(t *testing.T) {
	requireTools(t, "nfs-ls", "nfs-cp")
	origin := t.TempDir()
	local := t.TempDir()
	p := startNascache(t, localExport("/data", origin))
	srv := p.server("/data")

	const size = 64 << 20
	upSum := writeRandomFile(t, filepath.Join(local, "up.bin"), size, 11)
	if _, err := runTool(t, "nfs-cp", filepath.Join(local, "up.bin"), srv.libnfsURL("up.bin")); err != nil {
		t.Fatalf("nfs-cp upload: %v", err)
	}
	if got := sha256File(t, filepath.Join(origin, "up.bin")); got != upSum {
		t.Fatalf("uploaded file at the origin: sha256 %s, want %s", got, upSum)
	}

	originSum := writeRandomFile(t, filepath.Join(origin, "down.bin"), size+4097, 12)
	if err := os.Mkdir(filepath.Join(origin, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, "nfs-ls", srv.libnfsURL(""))
	if err != nil {
		t.Fatalf("nfs-ls: %v", err)
	}
	for name, sizeStr := range map[string]string{"up.bin": "67108864", "down.bin": "67112961"} {
		re := regexp.MustCompile(`(?m)\s` + sizeStr + `\s.*\b` + regexp.QuoteMeta(name) + `$`)
		if !re.MatchString(out) {
			t.Errorf("nfs-ls does not list %s with size %s", name, sizeStr)
		}
	}
	if !regexp.MustCompile(`(?m)^d.*\ssub$`).MatchString(out) {
		t.Errorf("nfs-ls does not list directory sub")
	}

	for name, want := range map[string]string{"up.bin": upSum, "down.bin": originSum} {
		dst := filepath.Join(local, "got-"+name)
		if _, err := runTool(t, "nfs-cp", srv.libnfsURL(name), dst); err != nil {
			t.Fatalf("nfs-cp download %s: %v", name, err)
		}
		if got := sha256File(t, dst); got != want {
			t.Errorf("downloaded %s: sha256 %s, want %s", name, got, want)
		}
	}
}
