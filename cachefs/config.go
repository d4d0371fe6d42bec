package cachefs

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nascache/nascache/backend"
	"github.com/nascache/nascache/chunkstore"
)

// Config configures an FS.
type Config struct {
	// Exports are the exports served. Ids and paths must be unique.
	Exports []ExportConfig
	// InodeCacheEntries bounds the in-memory cache of inode records in
	// front of meta (262,144 when zero; about 150 bytes each).
	InodeCacheEntries int
	// ListingCacheEntries bounds the directory entries kept in cached
	// listing snapshots in memory, summed over all snapshots (1,000,000
	// when zero; about 200 bytes each). It is the bound that matters;
	// older snapshots beyond it are evicted (listings of non-strict
	// exports stay in meta).
	ListingCacheEntries int
	// ListingCacheSnapshots bounds how many listing snapshots are kept in
	// memory (65,536 when zero), so that many small directories are not
	// re-listed on every pass over a tree.
	ListingCacheSnapshots int
	// FreshCacheEntries bounds the attributes and, separately, the lookups
	// of non-strict exports kept in memory (524,288 when zero; about 150
	// bytes each). A full map sheds a random eighth; meta keeps them all.
	FreshCacheEntries int
	// PersistQueueEntries bounds the origin answers waiting to be written
	// to meta (524,288 when zero; negative keeps attributes, lookups and
	// listings in memory only). When it is full, new answers are not
	// persisted; no call ever waits for it.
	PersistQueueEntries int
	// PersistFlushInterval is how long answers may wait in the queue
	// before they are committed to meta together (20 ms when zero); a
	// batch of 16,384 is committed at once.
	PersistFlushInterval time.Duration

	// Chunks is the data cache. Nil turns data caching off: every READ
	// goes to the origin. The FS does not close it; the caller closes it
	// after the FS.
	Chunks *chunkstore.Store
	// ChunkSizeBytes is the size of a data chunk (1 MiB when zero). It is
	// part of what a chunk means: changing it makes the cached chunks of
	// another size unreachable (their keys are per index), so they are
	// evicted like any cold data. At most the store's MaxChunkBytes.
	ChunkSizeBytes int
	// OriginConcurrency bounds the chunk fetches (demand and read-ahead)
	// running against the origins at once (32 when zero: as many READs as a client keeps in flight); read-ahead may
	// use at most half of it, so demand reads always find a slot soon.
	OriginConcurrency int
	// ReadAheadMaxChunks is the largest read-ahead window, in chunks, of
	// one sequentially read file (8 when zero; negative turns read-ahead
	// off). The window starts at 1 chunk and doubles with every
	// sequential READ that reaches a new chunk.
	ReadAheadMaxChunks int
	// Registry receives the cache metrics; nil registers nothing.
	Registry prometheus.Registerer
	// Now is the clock for attribute freshness (time.Now when nil).
	Now func() time.Time
}

// ExportConfig is one export.
type ExportConfig struct {
	// ID is the export's id (meta.DB.ExportID), carried in handles.
	ID uint16
	// Path is what clients mount.
	Path string
	// Origin is the storage behind the export. The FS does not close it.
	Origin backend.Origin
	// Consistency says how long attributes, listings and lookups taken
	// from the origin are trusted (the zero value is strict).
	Consistency Consistency
}

// DefaultConfig returns a Config with the default bounds and no exports.
func DefaultConfig() Config {
	return Config{
		InodeCacheEntries: 1 << 18, ListingCacheEntries: 1_000_000, ListingCacheSnapshots: 1 << 16,
		FreshCacheEntries: 1 << 19, PersistQueueEntries: 1 << 19, PersistFlushInterval: 20 * time.Millisecond,
		ChunkSizeBytes: 1 << 20, OriginConcurrency: 32, ReadAheadMaxChunks: 8,
	}
}

func (c *Config) ensureDefaults() {
	d := DefaultConfig()
	if c.InodeCacheEntries == 0 {
		c.InodeCacheEntries = d.InodeCacheEntries
	}
	if c.ListingCacheEntries == 0 {
		c.ListingCacheEntries = d.ListingCacheEntries
	}
	if c.ListingCacheSnapshots == 0 {
		c.ListingCacheSnapshots = d.ListingCacheSnapshots
	}
	if c.FreshCacheEntries == 0 {
		c.FreshCacheEntries = d.FreshCacheEntries
	}
	if c.PersistQueueEntries == 0 {
		c.PersistQueueEntries = d.PersistQueueEntries
	}
	if c.PersistFlushInterval == 0 {
		c.PersistFlushInterval = d.PersistFlushInterval
	}
	if c.ChunkSizeBytes == 0 {
		c.ChunkSizeBytes = d.ChunkSizeBytes
	}
	if c.OriginConcurrency == 0 {
		c.OriginConcurrency = d.OriginConcurrency
	}
	if c.ReadAheadMaxChunks == 0 {
		c.ReadAheadMaxChunks = d.ReadAheadMaxChunks
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	ids := make(map[uint16]bool)
	paths := make(map[string]bool)
	for i, e := range c.Exports {
		if e.ID == 0 {
			errs = append(errs, fmt.Errorf("exports[%d]: id 0 is reserved", i))
		}
		if ids[e.ID] {
			errs = append(errs, fmt.Errorf("exports[%d]: duplicate id %d", i, e.ID))
		}
		ids[e.ID] = true
		if e.Path == "" {
			errs = append(errs, fmt.Errorf("exports[%d]: empty path", i))
		}
		if paths[e.Path] {
			errs = append(errs, fmt.Errorf("exports[%d]: duplicate path %q", i, e.Path))
		}
		paths[e.Path] = true
		if e.Origin == nil {
			errs = append(errs, fmt.Errorf("exports[%d] (%s): no origin", i, e.Path))
		}
		if e.Consistency.Mode == ConsistencyTTL && e.Consistency.TTL <= 0 {
			errs = append(errs, fmt.Errorf("exports[%d] (%s): consistency ttl must be positive", i, e.Path))
		}
	}
	if c.InodeCacheEntries < 0 {
		errs = append(errs, errors.New("inode_cache_entries: negative"))
	}
	if c.ListingCacheEntries < 0 {
		errs = append(errs, errors.New("listing_cache_entries: negative"))
	}
	if c.ListingCacheSnapshots < 0 {
		errs = append(errs, errors.New("listing_cache_snapshots: negative"))
	}
	if c.FreshCacheEntries < 0 {
		errs = append(errs, errors.New("fresh_cache_entries: negative"))
	}
	if c.PersistFlushInterval < 0 {
		errs = append(errs, errors.New("persist_flush_interval: negative"))
	}
	if c.ChunkSizeBytes < 0 || c.ChunkSizeBytes > maxChunkBytes {
		errs = append(errs, fmt.Errorf("chunk_size: %d is not in 1..%d", c.ChunkSizeBytes, maxChunkBytes))
	}
	if c.OriginConcurrency < 0 {
		errs = append(errs, errors.New("origin_concurrency: negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cachefs config: %w", err)
	}
	return nil
}
