// Package integration holds nascache's end-to-end tests against real parts:
// the Linux kernel NFSv3 client in a throw-away QEMU guest (guest/), nfs-ganesha
// as the reference server, libnfs command-line clients, and raw ONC RPC.
//
// The tests carry the build tag `integration` and run with
//
//	go test -tags integration -v -timeout 30m ./integration/
//
// Each test builds what it needs from the checkout (the nascache binary once per
// run), starts servers as child processes on free loopback ports, and stops them
// again by PID. A missing tool (qemu, ganesha, libnfs-utils) skips a test with a
// loud message, and fails it when CI=true. See README.md for what each test
// proves.
package integration
