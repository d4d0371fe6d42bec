package chunkstore

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Dir = "/var/lib/nascache/chunks"
		c.CapacityBytes = 1 << 30
		return c
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants []string // substrings, one per expected problem
	}{
		{"default plus dir and capacity", func(*Config) {}, nil},
		{"zero", func(c *Config) { *c = Config{} }, []string{"dir", "block_bytes", "max_chunk_bytes", "capacity_bytes", "small_queue_percent"}},
		{"capacity below one chunk", func(c *Config) { c.CapacityBytes = 1 << 20 }, []string{"capacity_bytes"}},
		{"block not power of two", func(c *Config) { c.BlockBytes = 3000 }, []string{"block_bytes"}},
		{"huge chunk", func(c *Config) { c.MaxChunkBytes = maxDataLen + 1 }, []string{"max_chunk_bytes"}},
		{"small queue", func(c *Config) { c.SmallQueuePercent = 90 }, []string{"small_queue_percent"}},
		{"ghost", func(c *Config) { c.GhostEntries = -1 }, []string{"ghost_entries"}},
		{"sync", func(c *Config) { c.Sync = 7 }, []string{"sync"}},
		{"open files", func(c *Config) { c.OpenFiles = -1 }, []string{"open_files"}},
		{"no open-file cache", func(c *Config) { c.OpenFiles = 0 }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wants) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tc.wants), err)
			}
			for i, w := range tc.wants {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to name %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for _, p := range []SyncPolicy{SyncNone, SyncData, SyncFull} {
		got, err := ParseSyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParseSyncPolicy("always"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseSyncPolicy(always) = %v", err)
	}
}
