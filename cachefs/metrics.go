package cachefs

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts what the cache does. The counters are plain atomics, so
// Stats reads them without a registry; Prometheus reads them through
// CounterFuncs when a registry is given.
type metrics struct {
	chunkHits, chunkMisses         atomic.Uint64
	cacheBytes, originBytes        atomic.Uint64
	originFetches, originNanos     atomic.Uint64
	readAheadIssued, readAheadUsed atomic.Uint64
	attrHits, attrMisses           atomic.Uint64
	// persisted answers (attributes, lookups, listing entries) written to
	// meta, dropped because the write queue was full, failed writes.
	persistWritten, persistDropped, persistErrors atomic.Uint64
	originLatency                                 prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		originLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nascache_origin_read_seconds", Help: "Time to fetch one chunk from the origin.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
	}
}

// register adds the metrics to reg; gauges of the chunk store read its
// figures through stats.
func (m *metrics) register(reg prometheus.Registerer, stats func() Stats) error {
	if reg == nil {
		return nil
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	bySource := func(source string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nascache_read_bytes_total", Help: "Bytes answered to READs, by where they came from.",
			ConstLabels: prometheus.Labels{"source": source},
		}, func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func(Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(f(stats())) })
	}
	cs := []prometheus.Collector{
		m.originLatency,
		counter("nascache_cache_chunk_hits_total", "Chunk reads served from the local cache.", &m.chunkHits),
		counter("nascache_cache_chunk_misses_total", "Chunk reads that needed the origin (or shared a fetch under way).", &m.chunkMisses),
		bySource("cache", &m.cacheBytes),
		bySource("origin", &m.originBytes),
		counter("nascache_origin_chunk_fetches_total", "Chunks fetched from the origin.", &m.originFetches),
		counter("nascache_readahead_issued_total", "Chunks fetched ahead of sequential reads.", &m.readAheadIssued),
		counter("nascache_readahead_used_total", "Chunks fetched ahead that a READ then used.", &m.readAheadUsed),
		counter("nascache_attr_cache_hits_total", "Attributes and lookups answered without the origin.", &m.attrHits),
		counter("nascache_attr_cache_misses_total", "Attributes and lookups fetched from the origin.", &m.attrMisses),
		counter("nascache_meta_cache_records_written_total", "Attributes, lookups and listing entries persisted to the meta database.", &m.persistWritten),
		counter("nascache_meta_cache_records_dropped_total", "Origin answers not persisted because the meta write queue was full.", &m.persistDropped),
		counter("nascache_meta_cache_write_errors_total", "Failed writes of cached answers to the meta database.", &m.persistErrors),
		gauge("nascache_cache_bytes", "Bytes of chunks held in the cache (charged size).", func(s Stats) int64 { return s.CachedBytes }),
		gauge("nascache_cache_capacity_bytes", "Capacity of the chunk cache.", func(s Stats) int64 { return s.CapacityBytes }),
		gauge("nascache_cache_pinned_bytes", "Bytes of pinned chunks.", func(s Stats) int64 { return s.PinnedBytes }),
		gauge("nascache_cache_effective_capacity_bytes", "Capacity the chunk cache uses now: less than nascache_cache_capacity_bytes while its disk is short of room.",
			func(s Stats) int64 { return s.EffectiveCapacityBytes }),
		gauge("nascache_cache_open_files", "Chunk files kept open for fast hits.", func(s Stats) int64 { return int64(s.OpenFiles) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nascache_cache_disk_full_writes_total", Help: "Chunk writes the file system refused for want of space (ENOSPC, EDQUOT).",
		}, func() float64 { return float64(stats().DiskFullWrites) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nascache_cache_evictions_total", Help: "Chunks evicted to make room.",
		}, func() float64 { return float64(stats().Evictions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "nascache_cache_corrupt_total", Help: "Chunks dropped because a check failed on read.",
		}, func() float64 { return float64(stats().CorruptChunks) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) hit(n int) {
	m.chunkHits.Add(1)
	m.cacheBytes.Add(uint64(n))
}

func (m *metrics) miss(n int) {
	m.chunkMisses.Add(1)
	m.originBytes.Add(uint64(n))
}

func (m *metrics) originRead(d time.Duration) {
	m.originFetches.Add(1)
	m.originNanos.Add(uint64(d.Nanoseconds()))
	m.originLatency.Observe(d.Seconds())
}

// Stats is a snapshot of the cache's figures, for `nascache status`.
type Stats struct {
	// DataCache is false when no chunk store is configured (the
	// figures of the store are then zero).
	DataCache     bool
	CapacityBytes int64
	// EffectiveCapacityBytes is CapacityBytes, or less while the file
	// system holding the chunks has less room (the store fits itself).
	EffectiveCapacityBytes int64
	// DiskFullWrites counts chunk writes the file system refused for
	// want of space (ENOSPC, EDQUOT).
	DiskFullWrites uint64
	// OpenFiles is the number of chunk files the store keeps open.
	OpenFiles     int
	CachedBytes   int64
	PinnedBytes   int64
	Chunks        int
	Evictions     uint64
	CorruptChunks uint64
	ChunkHits     uint64
	ChunkMisses   uint64
	// CacheBytesServed and OriginBytesServed split the bytes answered to
	// READs by source.
	CacheBytesServed  uint64
	OriginBytesServed uint64
	OriginFetches     uint64
	// OriginReadAvg is the mean time of one chunk fetch from the origin.
	OriginReadAvg   time.Duration
	ReadAheadIssued uint64
	ReadAheadUsed   uint64
	AttrHits        uint64
	AttrMisses      uint64
	// Exports lists each export's path and consistency mode.
	Exports []ExportStats
}

// ExportStats is the state of one export.
type ExportStats struct {
	Path        string
	Consistency string
}

// HitRatio is the share of chunk reads served from the cache (0 when
// nothing was read).
func (s Stats) HitRatio() float64 {
	if s.ChunkHits+s.ChunkMisses == 0 {
		return 0
	}
	return float64(s.ChunkHits) / float64(s.ChunkHits+s.ChunkMisses)
}
