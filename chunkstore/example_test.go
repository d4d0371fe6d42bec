package chunkstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nascache/nascache/chunkstore"
	"github.com/rs/zerolog"
)

// The read path of a cache: look the chunk up, and on a miss (or a chunk
// found damaged) fetch it from the origin and store it.
func Example() {
	dir, err := os.MkdirTemp("", "chunkstore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cfg := chunkstore.DefaultConfig()
	cfg.Dir = dir
	cfg.CapacityBytes = 64 << 20
	s, err := chunkstore.Open(cfg, zerolog.Nop())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	ctx := context.Background()
	key := chunkstore.Key{
		Ino:     42,
		Version: chunkstore.VersionOf([]byte("size=11 mtime=1700000000.1 ctime=1700000000.1")),
		Index:   0,
	}
	fetchFromOrigin := func() []byte { return []byte("hello world") }

	buf := make([]byte, 0, 1<<20)
	data, err := s.Get(ctx, key, buf)
	if errors.Is(err, chunkstore.ErrNotFound) || errors.Is(err, chunkstore.ErrCorrupt) {
		data = fetchFromOrigin()
		if err := s.Put(ctx, key, data); err != nil {
			fmt.Println("not cached:", err) // serve it anyway
		}
	} else if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", data)

	data, err = s.Get(ctx, key, buf)
	fmt.Printf("%s %v\n", data, err)
	st := s.Stats()
	fmt.Println("hits", st.Hits, "misses", st.Misses)
	// Output:
	// hello world
	// hello world <nil>
	// hits 1 misses 1
}
