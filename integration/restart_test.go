//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKill9RestartUnderLiveMount kills nascache with SIGKILL while the guest
// holds a hard mount, an open fd, a cwd and looked-up handles, starts it again
// with the same data_dir and port, and requires the guest to carry on without
// ESTALE or EIO and with the right bytes (workloads/restart.sh).
func TestKill9RestartUnderLiveMount(t *testing.T) {
	requireGuest(t)
	origin := t.TempDir()
	for _, d := range []string{"d/sub", "expect"} {
		if err := os.MkdirAll(filepath.Join(origin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sums := map[string]string{
		"held.bin":   writeRandomFile(t, filepath.Join(origin, "d/held.bin"), 4<<20+123, 1),
		"looked.bin": writeRandomFile(t, filepath.Join(origin, "looked.bin"), 1<<20+7, 2),
		"a.txt":      writeRandomFile(t, filepath.Join(origin, "d/sub/a.txt"), 3000, 3),
	}
	for name, sum := range sums {
		if err := os.WriteFile(filepath.Join(origin, "expect", name+".sha256"), []byte(sum+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(origin, "d/rw.bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	p := startNascache(t, localExport("/data", origin))
	restarted := false
	onLine := func(line string) {
		if line != "STEP ready" {
			return
		}
		data, err := os.ReadFile(filepath.Join(origin, "guest-ready"))
		if err != nil || string(data) != "ready\n" {
			t.Errorf("guest said ready, but the origin has guest-ready = %q, %v", data, err)
		}
		p.kill9()
		p.start()
		writeFileAtomic(t, filepath.Join(origin, "restarted"), []byte("yes\n"))
		restarted = true
	}
	lines, rc := runGuest(t, p.server("/data"), guestRun{Script: "restart.sh", Opts: "actimeo=0", OnLine: onLine})
	if !restarted {
		t.Fatal("the guest never reached the restart point")
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	if rc != 0 {
		t.Fatalf("restart.sh exit code %d", rc)
	}
	// What the guest wrote after the restart reached the origin.
	for path, want := range map[string]string{
		"d/new.txt":   "new-after-restart\n",
		"d/newdir/z":  "y\n",
		"d/rw.bin":    "before\nafter\n",
		"guest-ready": "ready\n",
	} {
		got, err := os.ReadFile(filepath.Join(origin, path))
		if err != nil || string(got) != want {
			t.Errorf("origin %s = %q, %v; want %q", path, got, err, want)
		}
	}
	if got := sha256File(t, filepath.Join(origin, "d/held.bin")); got != sums["held.bin"] {
		t.Errorf("origin held.bin changed: %s", got)
	}
}
