package cachefs

import (
	"fmt"
	"strings"
	"time"
)

// ConsistencyMode says how an export trusts what it learnt from its origin.
type ConsistencyMode uint8

const (
	// ConsistencyStrict checks the origin on every GETATTR, LOOKUP and
	// READ: close-to-open through the cache at the cost of one origin
	// call. File data is still cached: a READ takes the origin version
	// from the attributes it just fetched, so a changed file is never
	// served stale bytes. The zero value.
	ConsistencyStrict ConsistencyMode = iota
	// ConsistencyTTL trusts attributes and lookups for TTL after the
	// origin was asked, like the client's actimeo.
	ConsistencyTTL
	// ConsistencyImmutable trusts them until evicted from memory: the
	// origin never changes behind nascache (training data sets).
	ConsistencyImmutable
)

// Consistency is an export's freshness rule.
type Consistency struct {
	Mode ConsistencyMode
	// TTL is how long origin answers are trusted under ConsistencyTTL.
	TTL time.Duration
}

// String returns the config spelling: strict, immutable or ttl:DURATION.
func (c Consistency) String() string {
	switch c.Mode {
	case ConsistencyStrict:
		return "strict"
	case ConsistencyImmutable:
		return "immutable"
	case ConsistencyTTL:
		return "ttl:" + c.TTL.String()
	}
	return fmt.Sprintf("Consistency(%d)", c.Mode)
}

// ParseConsistency parses "strict", "immutable" or "ttl:DURATION" (a
// positive Go duration such as 2s or 500ms).
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "strict":
		return Consistency{Mode: ConsistencyStrict}, nil
	case "immutable":
		return Consistency{Mode: ConsistencyImmutable}, nil
	}
	if rest, ok := strings.CutPrefix(s, "ttl:"); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d <= 0 {
			return Consistency{}, fmt.Errorf("consistency %q: ttl wants a positive duration like ttl:2s: %w", s, ErrInvalid)
		}
		return Consistency{Mode: ConsistencyTTL, TTL: d}, nil
	}
	return Consistency{}, fmt.Errorf("consistency %q: want strict, immutable or ttl:DURATION: %w", s, ErrInvalid)
}

// fresh reports whether an origin answer taken at asked may still be used
// at now.
func (c Consistency) fresh(asked, now time.Time) bool {
	switch c.Mode {
	case ConsistencyImmutable:
		return true
	case ConsistencyTTL:
		return now.Sub(asked) < c.TTL
	}
	return false
}
