package chunkstore

import (
	"errors"
	"fmt"
)

// SyncPolicy says how much a Put waits for stable storage. Whatever the
// policy, a chunk is whole or absent after the process is killed (the file
// is renamed into place only after it is fully written), and a chunk torn by
// a power loss is caught by its checksum and dropped, never served.
type SyncPolicy int

const (
	// SyncNone never calls fsync. Safe for a cache: see the type comment.
	SyncNone SyncPolicy = iota
	// SyncData fsyncs each chunk file before renaming it into place, so a
	// chunk that is visible after a power loss has its data too.
	SyncData
	// SyncFull also fsyncs the directory after the rename, so a Put that
	// returned survives a power loss.
	SyncFull
)

// String returns the config spelling of the policy.
func (p SyncPolicy) String() string {
	switch p {
	case SyncNone:
		return "none"
	case SyncData:
		return "data"
	case SyncFull:
		return "full"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses "none", "data" or "full".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	for _, p := range []SyncPolicy{SyncNone, SyncData, SyncFull} {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: sync policy %q: want none, data or full", ErrInvalidConfig, s)
}

// Config configures a Store. Start from DefaultConfig.
type Config struct {
	// Dir is the directory that holds the store (created if missing). It
	// must be empty or hold a store written by this package.
	Dir string
	// CapacityBytes bounds the bytes the store keeps on disk: every chunk
	// file, each rounded up to BlockBytes, including files being written.
	CapacityBytes int64
	// MaxChunkBytes is the largest chunk Put accepts.
	MaxChunkBytes int
	// BlockBytes is the file system allocation unit; each file is charged
	// its size rounded up to a multiple of it.
	BlockBytes int64
	// SmallQueuePercent is the share of CapacityBytes given to the S3-FIFO
	// probation queue (new chunks). The paper's default is 10.
	SmallQueuePercent int
	// GhostEntries is how many recently evicted keys the ghost queue
	// remembers; 0 means CapacityBytes/1 MiB (at least 1024).
	GhostEntries int
	// Sync is the durability policy of Put.
	Sync SyncPolicy
	// VerifyHeadersOnOpen makes Open read and check every chunk header
	// (one small read per chunk) instead of leaving it to the first Get.
	VerifyHeadersOnOpen bool
	// OpenFiles is how many chunk files the store keeps open after a
	// read, so that the next hit of the chunk is one preadv with no open
	// or close (see "Open files" in the package doc). Open lowers it to
	// the process's RLIMIT_NOFILE soft limit less 4096 (half of it when
	// the limit is below 8192) if that is less. 0 turns the cache of open
	// files off. Each cached file costs one
	// descriptor and the kernel's file object (about 250 bytes); its
	// inode stays in memory, as the inodes of a warm cache do anyway.
	OpenFiles int
}

// DefaultOpenFiles is the default of Config.OpenFiles: enough for the
// chunks of a working set of about 30,000 small files, well under the
// 1,048,576 descriptors the systemd unit allows.
const DefaultOpenFiles = 32768

// DefaultConfig returns a Config with every field but Dir and
// CapacityBytes set to its default.
func DefaultConfig() Config {
	return Config{
		MaxChunkBytes:     16 << 20,
		BlockBytes:        4096,
		SmallQueuePercent: 10,
		Sync:              SyncNone,
		OpenFiles:         DefaultOpenFiles,
	}
}

// Validate reports every problem of the config at once; each wraps
// ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Dir == "" {
		bad("dir: must be set")
	}
	if c.BlockBytes <= 0 || c.BlockBytes&(c.BlockBytes-1) != 0 {
		bad("block_bytes: %d is not a positive power of two", c.BlockBytes)
	}
	if c.MaxChunkBytes <= 0 || c.MaxChunkBytes > maxDataLen {
		bad("max_chunk_bytes: %d is not in 1..%d", c.MaxChunkBytes, maxDataLen)
	}
	if c.CapacityBytes <= 0 {
		bad("capacity_bytes: %d must be positive", c.CapacityBytes)
	} else if c.MaxChunkBytes > 0 && c.MaxChunkBytes <= maxDataLen && c.BlockBytes > 0 && c.CapacityBytes < chargeOf(c.MaxChunkBytes, c.BlockBytes) {
		bad("capacity_bytes: %d is smaller than one chunk of max_chunk_bytes %d", c.CapacityBytes, c.MaxChunkBytes)
	}
	if c.SmallQueuePercent < 1 || c.SmallQueuePercent > 50 {
		bad("small_queue_percent: %d is not in 1..50", c.SmallQueuePercent)
	}
	if c.GhostEntries < 0 {
		bad("ghost_entries: %d is negative", c.GhostEntries)
	}
	if c.OpenFiles < 0 {
		bad("open_files: %d is negative", c.OpenFiles)
	}
	switch c.Sync {
	case SyncNone, SyncData, SyncFull:
	default:
		bad("sync: unknown policy %d", int(c.Sync))
	}
	return errors.Join(errs...)
}

// ghostEntries is the effective ghost queue length.
func (c Config) ghostEntries() int {
	if c.GhostEntries > 0 {
		return c.GhostEntries
	}
	return int(max(1024, c.CapacityBytes>>20))
}

// chargeOf is what a chunk of n data bytes costs against the capacity: its
// file size rounded up to the allocation unit.
func chargeOf(n int, block int64) int64 {
	size := int64(headerSize + n)
	return (size + block - 1) &^ (block - 1)
}
