package cachefs

import (
	"errors"
	"fmt"

	"github.com/nascache/nascache/backend"
)

// Config configures an FS.
type Config struct {
	// Exports are the exports served. Ids and paths must be unique.
	Exports []ExportConfig
	// InodeCacheEntries bounds the in-memory cache of inode records in
	// front of meta (65536 when zero).
	InodeCacheEntries int
	// ListingCacheEntries bounds the directory entries kept in cached
	// listing snapshots, summed over all snapshots (1,000,000 when zero; about 200 bytes each).
	ListingCacheEntries int
	// ListingCacheSnapshots bounds how many listing snapshots are kept
	// (64 when zero).
	ListingCacheSnapshots int
}

// ExportConfig is one export.
type ExportConfig struct {
	// ID is the export's id (meta.DB.ExportID), carried in handles.
	ID uint16
	// Path is what clients mount.
	Path string
	// Origin is the storage behind the export. The FS does not close it.
	Origin backend.Origin
}

// DefaultConfig returns a Config with the default bounds and no exports.
func DefaultConfig() Config {
	return Config{InodeCacheEntries: 65536, ListingCacheEntries: 1_000_000, ListingCacheSnapshots: 64}
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
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cachefs config: %w", err)
	}
	return nil
}
