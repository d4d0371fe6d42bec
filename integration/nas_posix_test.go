//go:build integration

package integration

import "testing"

// TestNASPOSIXWorkload runs workloads/posix.sh in the guest (Linux kernel
// NFSv3 client) against nascache whose origin is nfs-ganesha in Docker
// exporting a host directory, then re-verifies, directly in that
// directory, every file's SHA-256 and every entry's owner, group and mode
// (so uids set or created in the guest are the uids at the NAS).
func TestNASPOSIXWorkload(t *testing.T) {
	requireGuest(t)
	requireDocker(t)
	dir := t.TempDir()
	port := nasPorts(t)
	startNAS(t, dir, port)
	p := startNascache(t, nasExport("/nas", port))
	p.waitMetric(`nascache_origin_up{export="/nas"}`, "origin mounted", func(v float64) bool { return v == 1 })
	runPOSIXWorkload(t, p.server("/nas"), dir)
}
