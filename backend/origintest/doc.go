// Package origintest is the conformance suite every backend.Origin must
// pass. Run calls newOrigin once per test, each time for an empty root
// directory, and checks the contract of backend/origin.go: attributes,
// namespace operations, reads and writes, big directories and error
// classes. It assumes nothing that only a local directory does, so it also
// runs against an NFS origin; calls use root credentials (uid 0) unless a
// test is about ownership.
package origintest
