// Package dockerorigin is the nfs-ganesha "origin NAS" of nascache's integration tests, run as a
// Docker container built on this machine without any image registry. The package holds no Go API:
// it is the scripts beside this file (see README.md) and, under the build tag `integration`, the
// test that proves them:
//
//	build-ganesha-image.sh              debootstrap rootfs -> docker import -> nascache-test/ganesha:<hash>
//	run-ganesha.sh NAME HOSTDIR [PORT]  run it on the nascache-test network, ports on 127.0.0.1
//	stop-ganesha.sh NAME                clean stop (SIGTERM) and removal
//
// Run the test with
//
//	go test -tags integration -timeout 20m -v ./integration/docker/
//
// It skips with a loud message when Docker, root or libnfs-utils is missing, and fails instead
// when CI=true.
package dockerorigin
