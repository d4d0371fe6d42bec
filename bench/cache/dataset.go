package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

// The full-scale data set of issue 5; --scale multiplies every count and
// the big files' size.
const (
	fullSmallFiles = 20000
	fullSmallDirs  = 100
	smallMinBytes  = 60 << 10
	smallMaxBytes  = 160 << 10
	fullBigFiles   = 4
	fullBigBytes   = 1 << 30
	fullEmptyFiles = 50000
	fullEmptyDirs  = 500
	manifestName   = ".bench-dataset.json"
	datasetVersion = 1
)

// Dataset describes a generated tree. Names are derived from the counts, so
// a reader can address every file without listing a directory.
type Dataset struct {
	Version    int     `json:"version"`
	Scale      float64 `json:"scale"`
	Seed       uint64  `json:"seed"`
	SmallFiles int     `json:"small_files"`
	SmallDirs  int     `json:"small_dirs"`
	SmallBytes uint64  `json:"small_bytes"`
	BigFiles   int     `json:"big_files"`
	BigBytes   uint64  `json:"big_bytes_each"`
	EmptyFiles int     `json:"empty_files"`
	EmptyDirs  int     `json:"empty_dirs"`
}

// layout returns the counts for a scale (without SmallBytes, which depends
// on the random sizes).
func layout(scale float64, seed uint64) Dataset {
	n := func(full int, lo int) int { return max(lo, int(math.Round(float64(full)*scale))) }
	big := max(uint64(1<<20), uint64(math.Round(float64(fullBigBytes)*scale))>>20<<20)
	return Dataset{
		Version: datasetVersion, Scale: scale, Seed: seed,
		SmallFiles: n(fullSmallFiles, 1), SmallDirs: n(fullSmallDirs, 1),
		BigFiles: fullBigFiles, BigBytes: big,
		EmptyFiles: n(fullEmptyFiles, 1), EmptyDirs: n(fullEmptyDirs, 1),
	}
}

// smallPath is the relative path of small file i: files are dealt round
// robin over the directories.
func (d Dataset) smallPath(i int) (dir, name string) {
	return fmt.Sprintf("small/d%03d", i%d.SmallDirs), fmt.Sprintf("f%05d.bin", i)
}

func (d Dataset) bigPath(i int) string { return fmt.Sprintf("big/big-%d.bin", i) }

func (d Dataset) emptyPath(i int) (dir, name string) {
	return fmt.Sprintf("empty/d%03d", i%d.EmptyDirs), fmt.Sprintf("e%05d", i)
}

// smallSize is small file i's size, uniform in [60 KiB, 160 KiB].
func (d Dataset) smallSize(i int) int {
	r := rand.New(rand.NewPCG(d.Seed, uint64(i)))
	return smallMinBytes + r.IntN(smallMaxBytes-smallMinBytes+1)
}

// readManifest returns the data set recorded in root, or an error if there
// is none (an interrupted generation leaves none).
func readManifest(root string) (Dataset, error) {
	var d Dataset
	b, err := os.ReadFile(filepath.Join(root, manifestName))
	if err != nil {
		return d, fmt.Errorf("read manifest of %s: %w", root, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode manifest of %s: %w", root, err)
	}
	return d, nil
}

// generate makes the data set under root unless a complete one with the
// same layout is already there. The manifest is written last, so an
// interrupted run regenerates.
func generate(root string, scale float64, seed uint64, workers int) (Dataset, bool, error) {
	want := layout(scale, seed)
	if have, err := readManifest(root); err == nil {
		have.SmallBytes = 0
		if have == want {
			have, err = readManifest(root)
			return have, false, err
		}
		return Dataset{}, false, fmt.Errorf("generate %s: %w (have %+v)", root, errOtherDataset, have)
	}
	for _, dir := range []string{"small", "big", "empty"} {
		if err := os.RemoveAll(filepath.Join(root, dir)); err != nil {
			return want, false, fmt.Errorf("generate %s: %w", root, err)
		}
	}
	for i := range want.SmallDirs {
		dir, _ := want.smallPath(i)
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return want, false, fmt.Errorf("generate %s: %w", dir, err)
		}
	}
	for i := range want.EmptyDirs {
		dir, _ := want.emptyPath(i)
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return want, false, fmt.Errorf("generate %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "big"), 0o755); err != nil {
		return want, false, fmt.Errorf("generate big: %w", err)
	}
	for i := range want.SmallFiles {
		want.SmallBytes += uint64(want.smallSize(i))
	}
	var g errgroup.Group
	g.SetLimit(max(1, workers))
	for i := range want.BigFiles {
		g.Go(func() error {
			return writeRandom(filepath.Join(root, want.bigPath(i)), want.BigBytes, want.Seed, uint64(1<<40+i))
		})
	}
	for i := range want.SmallFiles {
		g.Go(func() error {
			dir, name := want.smallPath(i)
			return writeRandom(filepath.Join(root, dir, name), uint64(want.smallSize(i)), want.Seed, uint64(i))
		})
	}
	for i := range want.EmptyFiles {
		g.Go(func() error {
			dir, name := want.emptyPath(i)
			f, err := os.OpenFile(filepath.Join(root, dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return fmt.Errorf("generate %s/%s: %w", dir, name, err)
			}
			return f.Close()
		})
	}
	if err := g.Wait(); err != nil {
		return want, false, err
	}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		return want, false, fmt.Errorf("encode manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, manifestName), append(b, '\n'), 0o644); err != nil {
		return want, false, fmt.Errorf("write manifest: %w", err)
	}
	return want, true, nil
}

// writeRandom writes size pseudo-random bytes (ChaCha8 keyed by seed and
// stream, so contents are reproducible and incompressible) to path.
func writeRandom(path string, size, seed, stream uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], stream)
	src := rand.NewChaCha8(key)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	buf := make([]byte, min(size, 1<<20))
	for left := size; left > 0; {
		n := min(left, uint64(len(buf)))
		if _, err := src.Read(buf[:n]); err != nil {
			_ = f.Close() // the write error below is the one to report
			return fmt.Errorf("write %s: %w", path, err)
		}
		if _, err := f.Write(buf[:n]); err != nil {
			_ = f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// expectedContent regenerates the first n bytes of a generated file, for
// spot checks of what a reader got back.
func expectedContent(n int, seed, stream uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], stream)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b) // ChaCha8.Read never fails
	return b
}

// checkPrefix reports whether got starts like the generated file.
func checkPrefix(got []byte, seed, stream uint64) error {
	if !bytes.Equal(got, expectedContent(len(got), seed, stream)) {
		return errors.New("content differs from the generated data")
	}
	return nil
}
