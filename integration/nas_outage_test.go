//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/backend/nfs"
)

// TestNASOriginOutage is issue 4's outage test, in one guest boot:
//   - nascache starts while its nfs:// origin (ganesha in Docker) does not
//     exist yet, serves, and mounts the origin once it appears;
//   - a file created as uid 1000 in the guest is owned by 1000 at the origin;
//   - a file rewritten directly in the origin's directory is seen with its
//     new bytes through nascache (guest on actimeo=0);
//   - `docker stop` of the origin in the middle of the guest's read/write
//     loop: nascache's up gauge drops, calls get NFS3ERR_JUKEBOX (checked on
//     the wire with our own client, and by the error counter), the state
//     changes are logged; after `docker start` the loop completes with no
//     I/O error and every byte right, at the origin too.
func TestNASOriginOutage(t *testing.T) {
	requireGuest(t)
	requireDocker(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "change.txt"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := nasPorts(t)
	p := startNascache(t, nasExport("/nas", port))
	const up = `nascache_origin_up{export="/nas"}`
	const unavailable = `nascache_origin_errors_total{class="unavailable",export="/nas"}`
	if v := p.metric(up); v != 0 {
		t.Errorf("%s = %v with no origin yet, want 0", up, v)
	}
	if !p.logHas("nfs origin not reachable") {
		t.Error("nascache did not log that the origin is not reachable")
	}
	nas := startNAS(t, dir, port)
	p.waitMetric(up, "origin mounted", func(v float64) bool { return v == 1 })

	// Our own NFS client, mounted on nascache, checks the status on the
	// wire during the outage.
	probe, err := nfs.New(t.Context(), fmt.Sprintf("nfs://127.0.0.1:%d/nas?mountport=%d", p.port, p.port),
		nfs.Options{RetryFor: time.Nanosecond, CallTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("mount nascache with backend/nfs: %v", err)
	}
	defer probe.Close()
	root, _, err := probe.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	var changed, outage bool
	onLine := func(line string) {
		switch {
		case line == "STEP change-ready":
			// In place (same inode), shorter then longer than before.
			if err := os.WriteFile(filepath.Join(dir, "change.txt"), []byte("v2, rewritten in place at the origin\n"), 0o644); err != nil {
				t.Errorf("rewrite at origin: %v", err)
			}
			changed = true
		case line == "STEP loop-started":
			before := max(p.metric(unavailable), 0)
			nas.stop()
			p.waitMetric(up, "origin seen down", func(v float64) bool { return v == 0 })
			p.waitMetric(unavailable, "origin errors counted while the guest's loop runs", func(v float64) bool { return v > before })
			_, _, err := probe.Lookup(t.Context(), backend.Cred{}, root, "change.txt")
			var se *nfs.StatusError
			if !errors.As(err, &se) || se.Status != nfsv3.NFS3ERR_JUKEBOX {
				t.Errorf("LOOKUP through nascache with the origin down: %v, want NFS3ERR_JUKEBOX", err)
			}
			nas.run(port)
			p.waitMetric(up, "origin seen up again", func(v float64) bool { return v == 1 })
			writeFileAtomic(t, filepath.Join(dir, "loop", "origin-back"), []byte("yes\n"))
			outage = true
		}
	}
	lines, rc := runGuest(t, p.server("/nas"), guestRun{Script: "nas_outage.sh", InHost: true, Opts: "actimeo=0", OnLine: onLine})
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL:") {
			t.Errorf("guest: %s", l)
		}
	}
	if !changed || !outage {
		t.Fatalf("the guest did not reach every step (change %v, outage %v)", changed, outage)
	}
	if rc != 0 {
		t.Fatalf("nas_outage.sh exit code %d", rc)
	}
	for _, s := range []string{"nfs origin down", "nfs origin up"} {
		if !p.logHas(s) {
			t.Errorf("nascache log lacks %q", s)
		}
	}
	verifyManifestAtOrigin(t, filepath.Join(dir, "loop"))
	for _, name := range []string{"pub/u1000.txt", "pub/d1000"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Errorf("origin %s: %v", name, err)
		} else if st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("origin %s owned by %d:%d, want 1000:1000", name, st.Uid, st.Gid)
		}
	}
	// After the outage, the same probe (no re-mount) works again.
	if _, _, err := probe.Lookup(context.Background(), backend.Cred{}, root, "change.txt"); err != nil {
		t.Errorf("LOOKUP through nascache after the outage: %v", err)
	}
}
