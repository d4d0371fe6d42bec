package chunkstore

// Lock order: Store.mu, then fileCache.mu (files.go); nothing else is
// taken while either is held, and neither is taken while the other is
// held in the reverse order. Store.mu is never held across file I/O once
// Open has returned: I/O is done on entries that the lock made exclusive (a chunk
// being written is in stateFilling, one being unlinked is in
// stateRemoving), and readers work on immutable files that are replaced
// only by rename and deleted only by unlink, both of which leave an open
// descriptor valid. Readers are counted per entry in an atomic word, not
// under the lock (see "Readers keep their chunk charged").

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// entryState is the life cycle of an entry: filling -> ready -> removing,
// or filling -> removing (removed while it was written), or filling ->
// gone (the write failed).
type entryState uint8

const (
	stateFilling  entryState = iota // space reserved, file being written
	stateReady                      // file in place, may be read
	stateRemoving                   // out of the queues, file being unlinked
)

// entry is the in-memory record of one chunk.
type entry struct {
	key    Key
	size   int64 // file size: header + data
	charge int64 // size rounded up to the allocation unit

	// freq is the S3-FIFO access counter (0..3). Readers bump it holding
	// only mu.RLock, so it is atomic; losing a bump to a race is harmless.
	freq atomic.Int32

	// Guarded by Store.mu.
	state      entryState
	queue      queueID
	prev, next *entry
	doomed     bool // removed while filling: unlink as soon as written

	// stuck is set by the goroutine that owns a removing entry when its
	// file could not be unlinked; read under mu when the removal ends.
	stuck bool

	// opens counts, in units of openReader, the readers that looked the
	// entry up and have not closed its file yet; bit unlinkedBit is set
	// once the file is unlinked. See "Readers keep their chunk charged"
	// below for the protocol; only acquire, endRead and
	// finishRemoveLocked touch it. The open-file cache holds an entry
	// like a reader while it keeps the entry's descriptor (files.go).
	opens atomic.Int64

	// file is the entry's cached open descriptor, if any (files.go).
	// Installed only while the entry is ready, under mu's read lock;
	// taken out by the cache's CLOCK, by removal, or by Close.
	file atomic.Pointer[openFile]
}

// Readers keep their chunk charged.
//
// Unlinking a file that a reader has open frees no disk block until the
// reader closes it, so the charge of an evicted or removed chunk must
// outlive both the unlink and every reader that opened the file. The hot
// path must not take the write lock, so the hand-over is done on one
// atomic word per entry, e.opens = 2*readers + unlinked:
//
//   - acquire (lookup, under mu.RLock, only while state == stateReady)
//     adds openReader;
//   - endRead (after the reader closed its descriptor) subtracts
//     openReader;
//   - finishRemoveLocked (under mu.Lock, after the unlink returned) adds
//     unlinkedBit.
//
// Whoever makes the word exactly unlinkedBit (no reader left, file
// unlinked) returns the charge to the free space, and only they do:
//
//  1. Every acquire happens before the unlinkedBit is added. acquire runs
//     under the read lock and needs stateReady; the entry leaves
//     stateReady under the write lock (detachLocked, evictLocked) in a
//     critical section that precedes the one adding unlinkedBit. So an
//     acquire either completed before that (its RLock section ended
//     before the write lock was taken) or sees another state and takes
//     nothing. Once unlinkedBit is set the word only goes down.
//  2. Hence the word passes through the value unlinkedBit exactly once:
//     at the add of unlinkedBit if no reader is left (the remover sees
//     the result unlinkedBit and releases under the lock it holds), or
//     at the decrement of the last reader (which sees the result
//     unlinkedBit and takes the write lock to release). Before the bit
//     is set a decrement to 0 releases nothing: the remover still holds
//     the charge. Atomic read-modify-writes on one word are totally
//     ordered, so the two sides cannot both see unlinkedBit, and cannot
//     both miss it.
//  3. A stuck entry (its unlink failed) never gets unlinkedBit: its file
//     is still on disk, so its charge stays with stuckBytes whatever the
//     readers do.
//
// A reader that acquired the entry may open its path only after the
// unlink, when a new Put of the same key may have renamed a new file
// there. That file is charged to the new entry, which may be evicted
// while this reader (counted on the old entry) still holds it. To keep
// every open file under a held charge, read checks the word after its
// open: if unlinkedBit is not set yet, the old entry has not been
// unindexed (that happens after the bit is set, in the same critical
// section), so no new Put of the key has started and the open file is
// the entry's own; if it is set, read closes the file and misses.
const (
	unlinkedBit = 1
	openReader  = 2
)

// acquire counts a reader of e. The caller holds s.mu (read or write)
// and has seen e in stateReady.
func (e *entry) acquire() { e.opens.Add(openReader) }

// unlinked reports whether e's file has been unlinked (unlinkedBit).
func (e *entry) unlinked() bool { return e.opens.Load()&unlinkedBit != 0 }

const maxFreq = 3

// touch records a hit.
func (e *entry) touch() {
	for {
		f := e.freq.Load()
		if f >= maxFreq || e.freq.CompareAndSwap(f, f+1) {
			return
		}
	}
}

// Store is a directory of checksummed chunk files with a capacity bound and
// S3-FIFO eviction. All methods are safe for concurrent use.
type Store struct {
	cfg Config
	log zerolog.Logger
	// hookBeforeRename, if set (tests only), runs after a chunk's temp file
	// is written and before it is renamed into place.
	hookBeforeRename func(Key)
	// hookWrite, if set (tests only), runs after a chunk's header is
	// written to its temp file and before the data; an error it returns
	// fails the write as the file system's would.
	hookWrite func(Key, *os.File) error
	// hookReading, if set (tests only), runs while a reader holds a
	// chunk's file open, before it reads it.
	hookReading func(Key)
	// statfs reports the bytes the file system under dir has free for
	// the store (the real one but in tests; see space.go).
	statfs   func(dir string) (availBytes int64, err error)
	dir      string
	tmpPath  string
	lockFile *os.File
	// chunksFD is the chunks directory, opened once: a hit that opens its
	// chunk does so relative to it (openChunk).
	chunksFD int
	// chunksPrefix is the chunks directory's path and a separator.
	chunksPrefix string
	noAtime      atomic.Bool // O_NOATIME still worth trying
	bufs         sync.Pool   // *[]byte, whole-chunk buffers for partial ReadAt
	files        fileCache   // open descriptors of recently read chunks
	inflight     sync.WaitGroup
	hits         atomic.Uint64
	misses       atomic.Uint64
	puts         atomic.Uint64
	evictions    atomic.Uint64
	corrupt      atomic.Uint64
	fileOpens    atomic.Uint64 // chunk files opened by readers
	diskFull     atomic.Uint64 // chunk writes refused for want of space
	// adapting mirrors capBytes < cfg.CapacityBytes for Put's check
	// without the lock (space.go).
	adapting    atomic.Bool
	emfileNoted atomic.Bool // the first EMFILE was logged

	// mu guards every field below, and the guarded fields of every entry.
	mu   sync.RWMutex
	cond *sync.Cond // on &mu (write side); broadcast when removals end or on Close
	// closed is set by Close; no new operation starts afterwards.
	closed  bool
	entries map[Key]*entry
	byIno   map[uint64]map[Key]*entry
	pinned  map[uint64]struct{}
	small   fifo // S3-FIFO probation queue
	main    fifo // S3-FIFO main queue
	pin     fifo // pinned chunks: in no eviction queue
	ghost   *ghost
	// usedBytes is every byte charged against the capacity: ready chunks,
	// reservations of chunks being written, chunks being unlinked,
	// unlinked chunks that readers (or cached descriptors) still hold
	// open, and files that could not be unlinked. It never exceeds
	// cfg.CapacityBytes; Put keeps it under capBytes.
	usedBytes int64
	// capBytes is the effective capacity: cfg.CapacityBytes, or less
	// while the file system cannot hold that much (space.go).
	capBytes int64
	// quotaLimited: a write failed with EDQUOT, which statfs does not
	// see, so capBytes is no longer raised from statfs (space.go).
	quotaLimited bool
	// lowWarned: the lowering of capBytes has been logged at warn since
	// the store was last at its configured capacity.
	lowWarned     bool
	fillingBytes  int64
	removingBytes int64
	// openBytes is the charge of the entries in unlinkedOpen: out of the
	// index, file unlinked, but still open by a reader, whose blocks the
	// file system keeps until the last close.
	openBytes    int64
	unlinkedOpen map[*entry]struct{}
	stuckBytes   int64
	smallTarget  int64
}

// Stats is a snapshot of the store's counters.
type Stats struct {
	// CapacityBytes is the configured capacity.
	CapacityBytes int64
	// EffectiveCapacityBytes is what the store fills up to: the
	// configured capacity, or less while the file system cannot hold
	// that much (the disk is shared, or smaller than the capacity).
	EffectiveCapacityBytes int64
	// UsedBytes is all that is charged against the capacity, including
	// chunks being written or removed; never more than CapacityBytes.
	UsedBytes int64
	// CachedBytes is what the readable chunks take (charged size).
	CachedBytes int64
	PinnedBytes int64
	Chunks      int
	SmallChunks int
	MainChunks  int
	Hits        uint64
	Misses      uint64
	Puts        uint64
	Evictions   uint64
	// Corrupt counts chunks dropped because a check failed on read.
	Corrupt uint64
	// DiskFullWrites counts chunk writes that the file system refused
	// for want of space (ENOSPC, EDQUOT) although the store had room.
	DiskFullWrites uint64
	// OpenFiles is the number of chunk descriptors cached open.
	OpenFiles int
}

// Get appends the whole chunk stored under key to dst and returns the
// extended slice. When cap(dst)-len(dst) is at least the chunk size the
// data is read straight into dst with no other copy. The checksum is
// verified first: a damaged chunk is removed and ErrCorrupt returned; a
// missing one gives ErrNotFound.
func (s *Store) Get(ctx context.Context, key Key, dst []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return dst, fmt.Errorf("get chunk %v: %w", key, err)
	}
	e, err := s.lookup(key)
	if err != nil {
		return dst, fmt.Errorf("get chunk %v: %w", key, err)
	}
	defer s.endRead(e)
	out, err := s.read(e, dst)
	if err != nil {
		return dst, fmt.Errorf("get chunk %v: %w", key, err)
	}
	return out, nil
}

// ReadAt reads len(p) bytes of the chunk under key starting at off, like
// io.ReaderAt: n < len(p) comes with io.EOF. The whole chunk is verified
// on every call. A read of the whole chunk into a large enough p costs no
// extra copy; a partial read goes through a pooled buffer.
func (s *Store) ReadAt(ctx context.Context, key Key, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("read chunk %v: %w", key, err)
	}
	if off < 0 {
		return 0, fmt.Errorf("read chunk %v at %d: negative offset", key, off)
	}
	e, err := s.lookup(key)
	if err != nil {
		return 0, fmt.Errorf("read chunk %v: %w", key, err)
	}
	defer s.endRead(e)
	dataLen := e.size - headerSize
	if off == 0 && int64(len(p)) >= dataLen {
		out, err := s.read(e, p[:0])
		if err != nil {
			return 0, fmt.Errorf("read chunk %v: %w", key, err)
		}
		if len(out) < len(p) {
			return len(out), io.EOF
		}
		return len(out), nil
	}
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	out, err := s.read(e, (*bp)[:0])
	*bp = out[:0]
	if err != nil {
		return 0, fmt.Errorf("read chunk %v: %w", key, err)
	}
	if off >= int64(len(out)) {
		return 0, io.EOF
	}
	n := copy(p, out[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Contains reports whether a readable chunk is stored under key, without
// counting a hit or a miss (for read-ahead decisions).
func (s *Store) Contains(key Key) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.entries[key]
	return !s.closed && e != nil && e.state == stateReady
}

// lookup finds a ready entry, records the hit in its frequency, counts
// the caller as its reader and joins the in-flight group; the caller must
// call s.endRead once it has closed the entry's file.
func (s *Store) lookup(key Key) (*entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	e := s.entries[key]
	if e == nil || e.state != stateReady {
		s.misses.Add(1)
		return nil, ErrNotFound
	}
	e.touch()
	e.acquire()
	s.inflight.Add(1)
	return e, nil
}

// endRead ends a read begun by lookup, after the reader closed or
// released the entry's file.
func (s *Store) endRead(e *entry) {
	s.endHold(e)
	s.inflight.Done()
}

// endHold drops one openReader hold on e (a reader's, or the open-file
// cache's once its descriptor is closed): the last holder of an unlinked
// chunk returns its charge.
func (s *Store) endHold(e *entry) {
	if e.opens.Add(-openReader) == unlinkedBit {
		s.mu.Lock()
		s.releaseUnlinkedLocked(e)
		s.mu.Unlock()
		s.cond.Broadcast() // Puts waiting for these bytes
	}
}

// releaseUnlinkedLocked returns the charge of an unlinked entry whose
// last reader has gone.
func (s *Store) releaseUnlinkedLocked(e *entry) {
	delete(s.unlinkedOpen, e)
	s.openBytes -= e.charge
	s.usedBytes -= e.charge
}

// read appends e's verified data to dst. On damage it drops the entry.
// The caller is a reader of e (lookup). A hit reads through e's cached
// descriptor when there is one; otherwise it opens the file, offers the
// descriptor to the open-file cache, and closes it if the cache does not
// keep it.
func (s *Store) read(e *entry, dst []byte) ([]byte, error) {
	if f := e.file.Load(); f != nil && f.tryAcquire() {
		if !f.used.Load() {
			f.used.Store(true)
		}
		defer s.releaseFile(f)
		return s.readFD(e, f.fd, dst)
	}
	fd, err := s.openChunk(e.key)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			// Removed behind our back (or evicted a moment ago).
			s.misses.Add(1)
			s.drop(e, false)
			return dst, ErrNotFound
		}
		return dst, &fs.PathError{Op: "open", Path: s.path(e.key), Err: err}
	}
	if e.unlinked() {
		// Evicted or removed while we opened it: what we opened may be
		// a newer file of the same key, charged to another entry (see
		// "Readers keep their chunk charged"). Miss instead.
		unix.Close(fd) //nolint:errcheck // read-only descriptor: close cannot lose data
		s.misses.Add(1)
		return dst, ErrNotFound
	}
	if f := s.cacheFile(e, fd); f != nil {
		defer s.releaseFile(f)
	} else {
		defer unix.Close(fd) //nolint:errcheck // read-only descriptor: close cannot lose data
	}
	return s.readFD(e, fd, dst)
}

// readFD reads and verifies e's file through fd, which the caller keeps
// open until it returns.
func (s *Store) readFD(e *entry, fd int, dst []byte) ([]byte, error) {
	if s.hookReading != nil {
		s.hookReading(e.key)
	}
	start := len(dst)
	dataLen := int(e.size - headerSize)
	dst = slices.Grow(dst, dataLen)[:start+dataLen]
	var hdr [headerSize]byte
	got, err := preadFull(fd, hdr[:], dst[start:])
	if err != nil {
		return dst[:start], &fs.PathError{Op: "read", Path: s.path(e.key), Err: err}
	}
	if err := verify(e, hdr[:], dst[start:], got); err != nil {
		s.corrupt.Add(1)
		s.misses.Add(1)
		s.log.Warn().Str("chunk", e.key.String()).Str("path", s.path(e.key)).Err(err).Msg("dropping corrupt chunk")
		s.drop(e, true)
		return dst[:start], err
	}
	s.hits.Add(1)
	return dst, nil
}

// verify checks what preadFull read (got bytes in all) against the entry.
func verify(e *entry, hdr, data []byte, got int) error {
	if int64(got) < e.size {
		return fmt.Errorf("%w: file is %d bytes, want %d", ErrCorrupt, got, e.size)
	}
	h, err := decodeHeader(hdr)
	if err != nil {
		return err
	}
	if err := h.check(e.key, e.size); err != nil {
		return err
	}
	if sum := crc32.Checksum(data, castagnoli); sum != h.dataCRC {
		return fmt.Errorf("%w: data checksum %08x, header says %08x", ErrCorrupt, sum, h.dataCRC)
	}
	return nil
}

// openChunk opens the chunk file of k read-only, relative to the chunks
// directory, with O_NOATIME where the kernel allows it, so that a hit
// changes nothing on disk. A process out of descriptors (EMFILE, ENFILE)
// sheds half of the open-file cache and tries once more.
func (s *Store) openChunk(k Key) (int, error) {
	var name [chunkRelName + 1]byte // NUL-terminated, on the stack
	k.appendChunkPath(name[:0])
	s.fileOpens.Add(1)
	fd, err := s.openChunkName(&name[0])
	if (err == unix.EMFILE || err == unix.ENFILE) && s.files.limit > 0 {
		shed := s.shedFiles()
		if !s.emfileNoted.Swap(true) {
			s.log.Warn().Err(err).Int("closed", shed).Int("open_files", s.files.limit).
				Msg("out of file descriptors: closing cached chunk files; raise RLIMIT_NOFILE or lower open_files")
		}
		if shed > 0 {
			fd, err = s.openChunkName(&name[0])
		}
	}
	return fd, err
}

// openChunkName opens the NUL-terminated path name relative to the
// chunks directory.
func (s *Store) openChunkName(name *byte) (int, error) {
	for {
		flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
		noAtime := s.noAtime.Load()
		if noAtime {
			flags |= unix.O_NOATIME
		}
		fd, err := openat(s.chunksFD, name, flags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EPERM && noAtime:
			s.noAtime.Store(false)
			continue
		}
		return fd, err
	}
}

// openat is openat(2) of a NUL-terminated path given by its first byte:
// unlike unix.Openat it takes no string, so it costs no allocation.
func openat(dirfd int, path *byte, flags int) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(path)), uintptr(flags), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// preadFull reads hdr then data from offset 0 in one preadv when it can,
// and returns the number of bytes read; a short count means end of file.
func preadFull(fd int, hdr, data []byte) (int, error) {
	total := len(hdr) + len(data)
	n := 0
	for n < total {
		var m int
		var err error
		switch {
		case n == 0:
			m, err = unix.Preadv(fd, [][]byte{hdr, data}, 0)
		case n < len(hdr):
			m, err = unix.Pread(fd, hdr[n:], int64(n))
		default:
			m, err = unix.Pread(fd, data[n-len(hdr):], int64(n))
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// drop removes a ready entry that a reader found damaged or missing. It
// does nothing if the entry has already left the ready state.
func (s *Store) drop(e *entry, unlink bool) {
	s.mu.Lock()
	if s.entries[e.key] != e || e.state != stateReady {
		s.mu.Unlock()
		return
	}
	s.detachLocked(e)
	s.mu.Unlock()
	if unlink {
		s.unlink(e)
	} else {
		s.dropCachedFile(e)
	}
	s.mu.Lock()
	s.finishRemoveLocked([]*entry{e}, nil)
	s.mu.Unlock()
}

// Put stores data under key. It returns nil without writing when the key is
// already stored, being stored, or being removed by another caller: chunks
// are immutable, so the bytes are the same. Put evicts before it writes, so
// the capacity holds at every moment; when nothing can be evicted it
// returns ErrNoSpace. While other Puts' chunks being written or unlinked
// would make room, Put waits for them (a wait bounded by their disk I/O, so
// it does not watch ctx). When the file system refuses the write for want
// of space although the store had room, Put lowers the store's effective
// capacity to what is on disk, evicts and tries once more (space.go).
// data is not retained.
func (s *Store) Put(ctx context.Context, key Key, data []byte) error {
	if len(data) > s.cfg.MaxChunkBytes {
		return fmt.Errorf("put chunk %v: %d bytes: %w", key, len(data), ErrTooLarge)
	}
	if err := s.enter(); err != nil {
		return fmt.Errorf("put chunk %v: %w", key, err)
	}
	defer s.inflight.Done()
	var refused error // the first write the file system refused for want of space
	for {
		if refused == nil && s.adapting.Load() {
			s.measureDisk()
		}
		e, err := s.reserve(ctx, key, len(data))
		if err != nil {
			if refused != nil {
				return fmt.Errorf("put chunk %v: retry after %v: %w", key, refused, err)
			}
			return fmt.Errorf("put chunk %v: %w", key, err)
		}
		if e == nil {
			return nil
		}
		fileLeft, err := s.write(ctx, key, data)
		s.commit(e, err == nil, fileLeft)
		if err == nil {
			s.puts.Add(1)
			return nil
		}
		if !diskFull(err) || fileLeft {
			return fmt.Errorf("put chunk %v: %w", key, err)
		}
		s.diskFull.Add(1)
		s.fitToDisk(err)
		if refused != nil {
			return fmt.Errorf("put chunk %v: %w", key, err)
		}
		refused = err
	}
}

// enter joins the in-flight group unless the store is closed.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

// reserve charges a new filling entry for key against the capacity,
// evicting first as needed. It returns nil, nil when key is present.
func (s *Store) reserve(ctx context.Context, key Key, dataLen int) (*entry, error) {
	charge := chargeOf(dataLen, s.cfg.BlockBytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, ok := s.entries[key]; ok {
			return nil, nil
		}
		free := s.capBytes - s.usedBytes
		if free >= charge {
			e := &entry{key: key, size: int64(headerSize + dataLen), charge: charge, state: stateFilling}
			s.indexLocked(e)
			s.usedBytes += charge
			s.fillingBytes += charge
			return e, nil
		}
		// Bytes other goroutines are unlinking, and unlinked chunks that
		// readers still have open, are about to be free: evict only what
		// they will not cover, then wait for them (a wait bounded by one
		// unlink or one pread; it keeps a chunk cached that evicting more
		// would lose). Chunks other goroutines are writing become
		// evictable when written, so they are worth waiting for too;
		// pinned chunks are not.
		if need := charge - free - s.removingBytes - s.openBytes; need > 0 {
			victims := s.evictLocked(need)
			if len(victims) > 0 {
				s.mu.Unlock()
				for _, v := range victims {
					s.unlink(v)
				}
				s.mu.Lock()
				s.finishRemoveLocked(victims, &s.evictions)
				continue
			}
			if s.removingBytes == 0 && s.fillingBytes == 0 && s.openBytes == 0 {
				return nil, fmt.Errorf("%w: %d bytes used of %d (configured %d), %d pinned, %d undeletable",
					ErrNoSpace, s.usedBytes, s.capBytes, s.cfg.CapacityBytes, s.pin.bytes, s.stuckBytes)
			}
		}
		s.cond.Wait()
	}
}

// write puts the chunk file in place: temp file, optional fsync, rename.
// On failure (ENOSPC from the file system included) it deletes what it
// wrote: the temp file, or the renamed file if the directory fsync after
// the rename failed. fileLeft reports that even that failed, so a file
// of the chunk still takes its blocks.
func (s *Store) write(ctx context.Context, key Key, data []byte) (fileLeft bool, err error) {
	var hdr [headerSize]byte
	encodeHeader(&hdr, key, data)
	f, err := os.CreateTemp(s.tmpPath, key.fileName()+".*")
	if err != nil {
		return false, err
	}
	path := f.Name() // the temp file, then the chunk file once renamed
	defer func() {
		if err != nil {
			if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				err = errors.Join(err, rmErr)
				fileLeft = true
			}
		}
	}()
	if _, err := f.Write(hdr[:]); err != nil {
		f.Close() //nolint:errcheck // the write error is the one to report
		return false, err
	}
	if s.hookWrite != nil {
		if err := s.hookWrite(key, f); err != nil {
			f.Close() //nolint:errcheck // the write error is the one to report
			return false, err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close() //nolint:errcheck // the write error is the one to report
		return false, err
	}
	if s.cfg.Sync >= SyncData {
		if err := f.Sync(); err != nil {
			f.Close() //nolint:errcheck // the sync error is the one to report
			return false, err
		}
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	// A cancelled caller makes no further change (the rename is the one
	// that publishes the chunk).
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if s.hookBeforeRename != nil {
		s.hookBeforeRename(key)
	}
	final := s.path(key)
	err = os.Rename(path, final)
	if errors.Is(err, fs.ErrNotExist) {
		// First chunk of its fanout directory.
		err = s.makeFanoutDir(filepath.Dir(final))
		if err == nil {
			err = os.Rename(path, final)
		}
	}
	if err != nil {
		return false, err
	}
	// From here a failure removes the chunk file, which commit forgets.
	path = final
	if s.cfg.Sync == SyncFull {
		if err := syncDir(filepath.Dir(final)); err != nil {
			return false, err
		}
	}
	return false, nil
}

// commit ends a fill: the entry becomes readable, or is removed if the
// write failed or a Remove came in meanwhile. A failed write releases its
// reservation unless fileLeft says that a file of it could not be
// deleted, which stays charged (as stuck) until a restart finds it.
func (s *Store) commit(e *entry, written, fileLeft bool) {
	s.mu.Lock()
	s.fillingBytes -= e.charge
	switch {
	case !written:
		s.unindexLocked(e)
		if fileLeft {
			s.stuckBytes += e.charge
		} else {
			s.usedBytes -= e.charge
		}
		s.mu.Unlock()
		s.cond.Broadcast()
		if fileLeft {
			s.log.Error().Str("chunk", e.key.String()).
				Msg("cannot delete a failed chunk write; its space stays charged until restart")
		}
		return
	case e.doomed:
		e.state = stateRemoving
		s.removingBytes += e.charge
		s.mu.Unlock()
		s.unlink(e)
		s.mu.Lock()
		s.finishRemoveLocked([]*entry{e}, nil)
		s.mu.Unlock()
		return
	}
	e.state = stateReady
	switch {
	case s.isPinnedLocked(e.key.Ino):
		s.pin.pushFront(e)
	case s.ghost.contains(e.key.hash()):
		s.main.pushFront(e)
	default:
		s.small.pushFront(e)
	}
	s.mu.Unlock()
	s.cond.Broadcast() // Puts waiting for evictable space
}

// Remove drops the chunk under key; removing an absent chunk is not an
// error. After Remove returns, Get of key misses until the next Put.
func (s *Store) Remove(ctx context.Context, key Key) error {
	_, err := s.removeWhere(ctx, func(k Key) bool { return k == key }, key.Ino)
	if err != nil {
		return fmt.Errorf("remove chunk %v: %w", key, err)
	}
	return nil
}

// RemoveInode drops every chunk of inode ino, of every version, and
// returns how many it dropped.
func (s *Store) RemoveInode(ctx context.Context, ino uint64) (int, error) {
	n, err := s.removeWhere(ctx, func(Key) bool { return true }, ino)
	if err != nil {
		return n, fmt.Errorf("remove chunks of inode %d: %w", ino, err)
	}
	return n, nil
}

// RemoveStale drops the chunks of inode ino whose version is not current
// (called when the origin file changed) and returns how many it dropped.
func (s *Store) RemoveStale(ctx context.Context, ino uint64, current Version) (int, error) {
	n, err := s.removeWhere(ctx, func(k Key) bool { return k.Version != current }, ino)
	if err != nil {
		return n, fmt.Errorf("remove stale chunks of inode %d: %w", ino, err)
	}
	return n, nil
}

func (s *Store) removeWhere(ctx context.Context, match func(Key) bool, ino uint64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.inflight.Done()
	var victims []*entry
	n := 0
	s.mu.Lock()
	for k, e := range s.byIno[ino] {
		if !match(k) {
			continue
		}
		switch e.state {
		case stateFilling:
			e.doomed = true
			n++
		case stateReady:
			s.detachLocked(e)
			victims = append(victims, e)
			n++
		}
	}
	s.mu.Unlock()
	for _, v := range victims {
		s.unlink(v)
	}
	if len(victims) > 0 {
		s.mu.Lock()
		s.finishRemoveLocked(victims, nil)
		s.mu.Unlock()
	}
	return n, nil
}

// Pin protects every chunk of inode ino, present and future, from
// eviction until Unpin. Pins live in memory: the owner of the pin list
// (cachefs, from meta) re-applies them after Open. Pinned chunks count
// against the capacity; Remove still removes them.
func (s *Store) Pin(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinned[ino] = struct{}{}
	for _, e := range s.byIno[ino] {
		switch e.queue {
		case queueSmall:
			s.small.remove(e)
			s.pin.pushFront(e)
		case queueMain:
			s.main.remove(e)
			s.pin.pushFront(e)
		}
	}
}

// Unpin makes the chunks of inode ino evictable again. They go to the main
// queue, as chunks someone cared about.
func (s *Store) Unpin(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pinned, ino)
	for _, e := range s.byIno[ino] {
		if e.queue == queuePinned {
			s.pin.remove(e)
			s.main.pushFront(e)
		}
	}
}

func (s *Store) isPinnedLocked(ino uint64) bool {
	_, ok := s.pinned[ino]
	return ok
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	st := Stats{
		CapacityBytes:          s.cfg.CapacityBytes,
		EffectiveCapacityBytes: s.capBytes,
		UsedBytes:              s.usedBytes,
		CachedBytes:            s.small.bytes + s.main.bytes + s.pin.bytes,
		PinnedBytes:            s.pin.bytes,
		Chunks:                 s.small.len + s.main.len + s.pin.len,
		SmallChunks:            s.small.len,
		MainChunks:             s.main.len,
	}
	s.mu.RUnlock()
	s.files.mu.Lock()
	st.OpenFiles = s.files.cachedLocked()
	s.files.mu.Unlock()
	st.DiskFullWrites = s.diskFull.Load()
	st.Hits = s.hits.Load()
	st.Misses = s.misses.Load()
	st.Puts = s.puts.Load()
	st.Evictions = s.evictions.Load()
	st.Corrupt = s.corrupt.Load()
	return st
}

// Close waits for operations in flight, then releases the directory. Later
// calls return ErrClosed; Close itself may be called more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cond.Broadcast()
	s.inflight.Wait()
	s.closeFiles()
	var errs []error
	if err := unix.Close(s.chunksFD); err != nil {
		errs = append(errs, &fs.PathError{Op: "close", Path: strings.TrimSuffix(s.chunksPrefix, "/"), Err: err})
	}
	// Closing the descriptor releases the flock.
	if err := s.lockFile.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close chunk store %s: %w", s.dir, err)
	}
	return nil
}

// evictLocked takes entries out of the queues, by S3-FIFO, until at least
// need bytes are chosen or nothing is evictable. The victims are in
// stateRemoving; the caller unlinks them and calls finishRemoveLocked.
func (s *Store) evictLocked(need int64) []*entry {
	var victims []*entry
	for freed := int64(0); freed < need; {
		e := s.evictOneLocked()
		if e == nil {
			break
		}
		e.state = stateRemoving
		s.removingBytes += e.charge
		freed += e.charge
		victims = append(victims, e)
	}
	return victims
}

// evictOneLocked is the S3-FIFO eviction step (Yang et al., SOSP 2023):
// while the small queue is over its share, its oldest entry leaves, to
// main if it was read again since it came in, else to the ghost queue and
// out; otherwise main's oldest entry leaves unless it was read, in which
// case it goes round again with one read fewer. The returned entry is in
// no queue.
func (s *Store) evictOneLocked() *entry {
	for {
		if s.small.len > 0 && (s.small.bytes >= s.smallTarget || s.main.len == 0) {
			e := s.small.tail
			s.small.remove(e)
			if e.freq.Load() > 0 {
				e.freq.Store(0)
				s.main.pushFront(e)
				continue
			}
			s.ghost.add(e.key.hash())
			return e
		}
		if s.main.len == 0 {
			return nil
		}
		e := s.main.tail
		s.main.remove(e)
		if f := e.freq.Load(); f > 0 {
			e.freq.Store(f - 1)
			s.main.pushFront(e)
			continue
		}
		return e
	}
}

// detachLocked takes a ready entry out of its queue into stateRemoving.
func (s *Store) detachLocked(e *entry) {
	switch e.queue {
	case queueSmall:
		s.small.remove(e)
	case queueMain:
		s.main.remove(e)
	case queuePinned:
		s.pin.remove(e)
	}
	e.state = stateRemoving
	s.removingBytes += e.charge
}

// finishRemoveLocked forgets entries whose files have been unlinked and
// returns their bytes to the free space, or hands that to their last
// reader if readers still have the file open; counter, if set, counts
// them.
func (s *Store) finishRemoveLocked(victims []*entry, counter *atomic.Uint64) {
	for _, e := range victims {
		// The bit is set before the entry leaves the index: read relies
		// on that order (see "Readers keep their chunk charged").
		switch {
		case e.stuck:
			// The file is still on disk: keep it charged.
			s.stuckBytes += e.charge
		case e.opens.Add(unlinkedBit) == unlinkedBit:
			s.usedBytes -= e.charge
		default:
			// Readers have it open: the last one releases it.
			s.unlinkedOpen[e] = struct{}{}
			s.openBytes += e.charge
		}
		s.unindexLocked(e)
		s.removingBytes -= e.charge
	}
	if counter != nil {
		counter.Add(uint64(len(victims)))
	}
	s.cond.Broadcast()
}

// unlink deletes the file of a removing entry, which the caller owns,
// after closing its cached descriptor (unless a reader still uses it).
func (s *Store) unlink(e *entry) {
	s.dropCachedFile(e)
	path := s.path(e.key)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.stuck = true
		s.log.Error().Err(err).Str("chunk", e.key.String()).
			Msg("cannot delete chunk file; its space stays charged until restart")
	}
}

func (s *Store) indexLocked(e *entry) {
	s.entries[e.key] = e
	m := s.byIno[e.key.Ino]
	if m == nil {
		m = make(map[Key]*entry)
		s.byIno[e.key.Ino] = m
	}
	m[e.key] = e
}

func (s *Store) unindexLocked(e *entry) {
	if s.entries[e.key] == e {
		delete(s.entries, e.key)
	}
	if m := s.byIno[e.key.Ino]; m[e.key] == e {
		delete(m, e.key)
		if len(m) == 0 {
			delete(s.byIno, e.key.Ino)
		}
	}
}

// path is the chunk file's path, for the calls that take one (write,
// unlink) and for messages; built on the stack, one allocation.
func (s *Store) path(k Key) string {
	var b [256]byte
	return string(k.appendChunkPath(append(b[:0], s.chunksPrefix...)))
}

// makeFanoutDir creates a fanout directory (racing Puts may both try).
func (s *Store) makeFanoutDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if s.cfg.Sync == SyncFull {
		return syncDir(filepath.Dir(dir))
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close() //nolint:errcheck // the sync error is the one to report
		return err
	}
	return d.Close()
}
