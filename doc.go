// Package nascache is the root of the nascache module, an NFSv3 caching
// tier between GPU hosts and the storage they already have. It holds no
// code: the binary is cmd/nascache, and deps_test.go here keeps the
// direction of dependencies between the packages
//
//	cmd -> nfsserver -> cachefs -> (meta, chunkstore, writeback, cluster) -> backend
//
// See docs/architecture.md.
package nascache
