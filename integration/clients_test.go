//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// permissionError is how libnfs and the kernel's mount report a refused
// client: MNT3ERR_ACCES/PERM at MNT, or an NFS3ERR_ACCES/PERM reply.
var permissionError = regexp.MustCompile(`(?i)MNT3ERR_ACCES|MNT3ERR_PERM|NFS3ERR_ACCES|NFS3ERR_PERM|permission denied|not permitted`)

// TestClientOutsideNetworkRefused serves two exports from one nascache: /denied
// for 10.99.0.0/16 only, /open for 127.0.0.0/8. All our clients come from
// 127.0.0.1 (the guest too, through QEMU's user networking), so the guest's
// mount of /denied and libnfs's nfs-ls of /denied must fail with a permission
// error, while /open works for both.
func TestClientOutsideNetworkRefused(t *testing.T) {
	requireGuest(t)
	requireTools(t, "nfs-ls")
	deniedDir, openDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(deniedDir, "secret"), []byte("no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(openDir, "visible"), []byte("yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	denied := localExport("/denied", deniedDir)
	denied.Clients = []string{"10.99.0.0/16"}
	p := startNascache(t, denied, localExport("/open", openDir))

	out, err := runTool(t, "nfs-ls", p.server("/denied").libnfsURL(""))
	if err == nil {
		t.Errorf("nfs-ls of /denied from 127.0.0.1 succeeded")
	} else if !permissionError.MatchString(out) {
		t.Errorf("nfs-ls of /denied failed, but not with a permission error: %q", out)
	}
	if strings.Contains(out, "secret") {
		t.Errorf("nfs-ls of /denied listed its content")
	}
	out, err = runTool(t, "nfs-ls", p.server("/open").libnfsURL(""))
	if err != nil || !strings.Contains(out, "visible") {
		t.Errorf("nfs-ls of /open: %v, output %q", err, out)
	}

	lines, rc := runGuest(t, p.server("/open"), guestRun{Script: "clients.sh"})
	if rc != 0 {
		t.Fatalf("clients.sh exit code %d (125: the guest could not mount /open)", rc)
	}
	if got := prefixed(lines, "OPEN-LS "); len(got) != 1 || !strings.Contains(got[0], "visible") {
		t.Errorf("guest listing of /open = %q, want it to show \"visible\"", got)
	}
	if got := prefixed(lines, "OPEN-WRITE "); len(got) != 1 || got[0] != "ok" {
		t.Errorf("guest write to /open: %q", got)
	}
	if data, err := os.ReadFile(filepath.Join(openDir, "from-guest")); err != nil || string(data) != "written-by-guest\n" {
		t.Errorf("origin of /open: from-guest = %q, %v", data, err)
	}
	got := prefixed(lines, "DENIED-MOUNT ")
	switch {
	case len(got) != 1:
		t.Errorf("guest printed no DENIED-MOUNT line")
	case !strings.HasPrefix(got[0], "refused: "):
		t.Errorf("guest mount of /denied from 127.0.0.1: %s", got[0])
	case !permissionError.MatchString(got[0]):
		t.Errorf("guest mount of /denied failed, but not with a permission error: %s", got[0])
	}
}
