package chunkstore

import "errors"

// Sentinels of the chunk store. Callers match them with errors.Is; every
// error returned by a Store method wraps one of these or an *fs.PathError
// naming the file at fault.
var (
	// ErrNotFound: the store holds no chunk under the key (a miss).
	ErrNotFound = errors.New("chunkstore: chunk not found")
	// ErrCorrupt: the chunk failed its header or checksum check. The store
	// has already dropped it; the caller refetches from the origin.
	ErrCorrupt = errors.New("chunkstore: chunk corrupt")
	// ErrNoSpace: the chunk does not fit even after evicting every
	// evictable chunk (the rest is pinned).
	ErrNoSpace = errors.New("chunkstore: no evictable space")
	// ErrTooLarge: the chunk is larger than Config.MaxChunkBytes.
	ErrTooLarge = errors.New("chunkstore: chunk too large")
	// ErrClosed: the Store has been closed.
	ErrClosed = errors.New("chunkstore: store closed")
	// ErrInvalidConfig: Config.Validate found a problem.
	ErrInvalidConfig = errors.New("chunkstore: invalid config")
	// ErrNotStore: the directory is not empty and does not hold a chunk
	// store of a format this code understands.
	ErrNotStore = errors.New("chunkstore: directory is not a chunk store")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("chunkstore: store in use by another process")
)
