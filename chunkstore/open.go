package chunkstore

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Open opens (or creates) the store in cfg.Dir and rebuilds its index from
// the files there: leftover temp files are deleted, files that cannot be
// chunks are deleted, and the rest become the warm cache. Open takes an
// exclusive lock on the directory (ErrLocked if another process has it).
// If the directory holds more than CapacityBytes, the oldest chunks are
// evicted before Open returns.
func Open(cfg Config, logger zerolog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:          cfg,
		log:          logger.With().Str("component", "chunkstore").Logger(),
		dir:          cfg.Dir,
		tmpPath:      filepath.Join(cfg.Dir, tmpDir),
		entries:      make(map[Key]*entry),
		byIno:        make(map[uint64]map[Key]*entry),
		pinned:       make(map[uint64]struct{}),
		unlinkedOpen: make(map[*entry]struct{}),
		small:        fifo{id: queueSmall},
		main:         fifo{id: queueMain},
		pin:          fifo{id: queuePinned},
		ghost:        newGhost(cfg.ghostEntries()),
		smallTarget:  cfg.CapacityBytes * int64(cfg.SmallQueuePercent) / 100,
		capBytes:     cfg.CapacityBytes,
		statfs:       statfsAvail,
		chunksFD:     -1,
		chunksPrefix: filepath.Join(cfg.Dir, chunksDir) + string(filepath.Separator),
	}
	s.files.limit = fileLimit(cfg.OpenFiles)
	s.cond = sync.NewCond(&s.mu)
	s.noAtime.Store(true)
	if err := s.prepare(); err != nil {
		if s.chunksFD >= 0 {
			unix.Close(s.chunksFD) //nolint:errcheck // the open error is the one to report
		}
		if s.lockFile != nil {
			s.lockFile.Close() //nolint:errcheck // the open error is the one to report
		}
		return nil, fmt.Errorf("open chunk store %s: %w", cfg.Dir, err)
	}
	return s, nil
}

// prepare checks, locks, cleans and scans the directory. It runs before
// the Store is shared, so it does I/O holding no lock.
func (s *Store) prepare() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	formatted, err := checkFormat(s.dir)
	if err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	s.lockFile = lf
	if err := flock(lf); err != nil {
		return err
	}
	// Temp files are chunks whose writer died before the rename.
	if err := os.RemoveAll(s.tmpPath); err != nil {
		return err
	}
	if err := os.Mkdir(s.tmpPath, 0o700); err != nil {
		return err
	}
	// Fanout directories are made on first use (see Store.write).
	if err := os.MkdirAll(filepath.Join(s.dir, chunksDir), 0o700); err != nil {
		return err
	}
	if !formatted {
		if err := writeFormat(s.dir); err != nil {
			return err
		}
	}
	fd, err := openDir(filepath.Join(s.dir, chunksDir))
	if err != nil {
		return err
	}
	s.chunksFD = fd
	if err := s.scan(); err != nil {
		return err
	}
	// A file system that cannot hold the capacity: start below it
	// (space.go). The Store is not shared yet; the lock is for form.
	s.measureDisk()
	return nil
}

// openDir opens a directory for openat.
func openDir(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.EWOULDBLOCK:
			return ErrLocked
		}
		return &fs.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
}

// checkFormat reports whether dir already holds a store; a directory that
// holds anything but (the debris of) a store is refused, so that a wrong
// path in the config never has its files deleted.
func checkFormat(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	if err == nil {
		if string(b) != formatMagic {
			return false, fmt.Errorf("%w: %s holds %q", ErrNotStore, formatFile, b)
		}
		return true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		switch e.Name() {
		case lockFile, tmpDir, chunksDir, formatFile + ".tmp":
			// Left by a first Open that died before writing FORMAT.
		default:
			return false, fmt.Errorf("%w: %s is not empty and has no %s", ErrNotStore, dir, formatFile)
		}
	}
	return false, nil
}

func writeFormat(dir string) error {
	tmp := filepath.Join(dir, formatFile+".tmp")
	if err := os.WriteFile(tmp, []byte(formatMagic), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close() //nolint:errcheck // the sync error is the one to report
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, formatFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// found is a chunk file seen by scan.
type found struct {
	key        Key
	size       int64
	mtimeNanos int64
}

// scanWorkers bounds the goroutines that list fanout directories at Open;
// more than the CPUs, since on a cold start each stat may wait for the disk.
const scanWorkers = 8

// scan rebuilds the index. Every chunk starts in the main queue with no
// recorded reads, oldest (by mtime) nearest eviction: what was cached
// before the restart is kept in preference to what a new scan brings in,
// and hits after the restart rebuild the frequencies.
func (s *Store) scan() error {
	start := time.Now()
	root := filepath.Join(s.dir, chunksDir)
	dirs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var fanouts []int
	for _, de := range dirs {
		path := filepath.Join(root, de.Name())
		f, ok := parseFanoutName(de.Name())
		if !ok || !de.IsDir() {
			s.log.Warn().Str("path", path).Msg("deleting unexpected entry in the chunk directory")
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			continue
		}
		fanouts = append(fanouts, f)
	}
	// List the fanout directories in parallel; each worker owns the
	// results of the directories it takes, and all are joined here.
	type result struct {
		found   []found
		dropped int
		err     error
	}
	results := make([]result, len(fanouts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(scanWorkers, len(fanouts)) {
		wg.Go(func() {
			for i := range next {
				r := &results[i]
				r.found, r.dropped, r.err = s.scanDir(filepath.Join(root, fanoutName(fanouts[i])), fanouts[i])
			}
		})
	}
	for i := range fanouts {
		next <- i
	}
	close(next)
	wg.Wait()

	var all []found
	dropped := 0
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
		all = append(all, r.found...)
		dropped += r.dropped
	}
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(a.mtimeNanos, b.mtimeNanos) })
	for _, c := range all {
		e := &entry{key: c.key, size: c.size, charge: chargeOf(int(c.size-headerSize), s.cfg.BlockBytes), state: stateReady}
		s.indexLocked(e)
		s.main.pushFront(e)
		s.usedBytes += e.charge
	}
	// A smaller capacity than last time: evict the oldest now.
	trimmed := 0
	if over := s.usedBytes - s.cfg.CapacityBytes; over > 0 {
		victims := s.evictLocked(over)
		for _, v := range victims {
			s.unlink(v)
		}
		s.finishRemoveLocked(victims, &s.evictions)
		trimmed = len(victims)
	}
	s.log.Info().Int("chunks", s.main.len).Int64("bytes", s.usedBytes).
		Int64("capacity", s.cfg.CapacityBytes).Int("dropped", dropped).Int("trimmed", trimmed).
		Int("open_files", s.files.limit).Dur("took", time.Since(start)).Msg("chunk store opened")
	return nil
}

// scanDir lists one fanout directory; it deletes what cannot be a chunk
// and returns the rest and the number deleted. Files are stat'ed relative
// to the directory descriptor, which saves a path walk per chunk.
func (s *Store) scanDir(dir string, f int) ([]found, int, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, 0, err
	}
	defer d.Close() //nolint:errcheck // read-only directory descriptor
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, 0, err
	}
	dirfd := int(d.Fd())
	out := make([]found, 0, len(names))
	dropped := 0
	for _, name := range names {
		c, why := s.check(dirfd, name, f)
		if why == "" {
			out = append(out, c)
			continue
		}
		path := filepath.Join(dir, name)
		s.log.Warn().Str("path", path).Str("reason", why).Msg("deleting file that is not a whole chunk")
		if err := os.RemoveAll(path); err != nil {
			return nil, 0, err
		}
		dropped++
	}
	return out, dropped, nil
}

// check says why the file name in directory dirfd is not a usable chunk
// ("" if it is).
func (s *Store) check(dirfd int, name string, f int) (found, string) {
	key, ok := parseFileName(name)
	if !ok || fanout(key) != f {
		return found{}, "unexpected name"
	}
	var st unix.Stat_t
	if err := fstatat(dirfd, name, &st); err != nil {
		return found{}, "stat: " + err.Error()
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return found{}, "not a regular file"
	}
	c := found{key: key, size: st.Size, mtimeNanos: st.Mtim.Nano()}
	if c.size < headerSize || c.size-headerSize > int64(s.cfg.MaxChunkBytes) {
		return found{}, fmt.Sprintf("size %d out of range", c.size)
	}
	if s.cfg.VerifyHeadersOnOpen {
		if err := checkHeaderAt(dirfd, name, key, c.size); err != nil {
			return found{}, err.Error()
		}
	}
	return c, ""
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// checkHeaderAt reads and checks the header of chunk file name in dirfd.
func checkHeaderAt(dirfd int, name string, key Key, size int64) error {
	var fd int
	var err error
	for {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd) //nolint:errcheck // read-only descriptor
	var hdr [headerSize]byte
	n, err := preadFull(fd, hdr[:], nil)
	if err != nil {
		return err
	}
	if n < headerSize {
		return fmt.Errorf("%w: file shorter than its header", ErrCorrupt)
	}
	h, err := decodeHeader(hdr[:])
	if err != nil {
		return err
	}
	return h.check(key, size)
}
