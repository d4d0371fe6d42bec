package meta

import "errors"

// Sentinels of meta. Callers use errors.Is; nothing compares message text.
var (
	// ErrCorrupt marks a persisted value that failed its version or
	// checksum check. Such a value is never used.
	ErrCorrupt = errors.New("meta: corrupt record")
	// ErrNotFound: no record under the key asked for.
	ErrNotFound = errors.New("meta: not found")
	// ErrClosed: the database was closed.
	ErrClosed = errors.New("meta: database closed")
	// ErrInvalid: a caller passed a value meta cannot store.
	ErrInvalid = errors.New("meta: invalid argument")
	// ErrExhausted: a counter (export ids) has no values left.
	ErrExhausted = errors.New("meta: id space exhausted")
)
