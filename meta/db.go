package meta

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

// Bucket and key names. Changing any of them is a schema change.
var (
	bucketConfig  = []byte("config")
	bucketExports = []byte("exports")
	bucketRoots   = []byte("roots")
	bucketInodes  = []byte("inodes")
	bucketIndex   = []byte("fileids")
	bucketPins    = []byte("pins")
	// The freshness tier (fresh.go), added in schema version 2.
	bucketGens     = []byte("gens")
	bucketAttrs    = []byte("attrs")
	bucketLookups  = []byte("lookups")
	bucketListings = []byte("listings")
	bucketListed   = []byte("listed")
	bucketModes    = []byte("modes")

	keySchema     = []byte("schema")
	keyHandleKey  = []byte("handlekey")
	keyNextIno    = []byte("nextino")
	keyNextExport = []byte("nextexport")
	keyClean      = []byte("clean")
)

// schemaVersion is the layout of the buckets. Open upgrades version 1
// in place (version 2 only adds the buckets of the freshness tier) and
// refuses any other value.
const schemaVersion = 2

// HandleKeyBytes is the size of the handle MAC key.
const HandleKeyBytes = 32

// mapBatchEntries bounds how many entries one write transaction of Map
// holds, so that a 100,000-entry listing is a handful of transactions and
// no single one pins a huge dirty set.
const mapBatchEntries = 16384

// Options configure Open.
type Options struct {
	// Logger receives open/close events.
	Logger zerolog.Logger
	// NoSync skips fsync on commit. Only for tests: a crash may lose
	// committed transactions.
	NoSync bool
	// Rand is the source of the handle key and generations
	// (crypto/rand.Reader when nil).
	Rand io.Reader
	// LockTimeout bounds the wait for the file lock held by another
	// process (1 s when zero).
	LockTimeout time.Duration
	// MaxBatchDelay is how long the first of concurrent Map writes waits
	// for others to share its commit (group commit; 2 ms when zero).
	MaxBatchDelay time.Duration
}

// defaultMaxBatchDelay: short, because a lone LOOKUP of a new object pays
// it in full; writers arriving while a commit's fsync runs join the next
// batch anyway.
const defaultMaxBatchDelay = 2 * time.Millisecond

// DB is the metadata database. All methods are safe for concurrent use.
type DB struct {
	bolt      *bolt.DB
	log       zerolog.Logger
	rand      io.Reader
	handleKey []byte
	gens      gens
}

// Open opens (creating if needed) the database at path.
func Open(path string, opts Options) (*DB, error) {
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open meta db %s: %w", path, err)
	}
	bdb.MaxBatchDelay = opts.MaxBatchDelay
	if bdb.MaxBatchDelay == 0 {
		bdb.MaxBatchDelay = defaultMaxBatchDelay
	}
	db := &DB{bolt: bdb, log: opts.Logger, rand: opts.Rand, gens: gens{byExp: make(map[uint16]*Generation)}}
	if db.rand == nil {
		db.rand = rand.Reader
	}
	if err := db.init(); err != nil {
		_ = bdb.Close() // the init error is the one that matters
		return nil, fmt.Errorf("open meta db %s: %w", path, err)
	}
	db.log.Info().Str("path", path).Msg("meta db open")
	return db, nil
}

// init checks the schema (upgrading version 1), creates the buckets,
// loads the export generations (moving them on after an unclean
// shutdown, and removing the clean-shutdown marker) and loads or makes
// the handle key, all in one transaction, which commits (fsynced) before
// Open returns.
func (db *DB) init() error {
	crashed := false
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		cfg, err := tx.CreateBucketIfNotExists(bucketConfig)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketConfig, err)
		}
		if v := cfg.Get(keySchema); v != nil {
			s, err := openUint64(kindSchema, v)
			if err != nil {
				return fmt.Errorf("schema record: %w", err)
			}
			if s != schemaVersion && s != 1 {
				return fmt.Errorf("schema version %d, this build reads 1 and %d: %w", s, schemaVersion, ErrCorrupt)
			}
			if s == 1 {
				db.log.Info().Msg("upgrading meta db schema 1 -> 2")
			}
		}
		// Version 1 lacks the freshness buckets; creating them is the
		// whole upgrade.
		for _, name := range [][]byte{bucketExports, bucketRoots, bucketInodes, bucketIndex, bucketPins,
			bucketGens, bucketAttrs, bucketLookups, bucketListings, bucketListed, bucketModes} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := cfg.Put(keySchema, sealUint64(kindSchema, schemaVersion)); err != nil {
			return fmt.Errorf("put schema: %w", err)
		}
		if crashed, err = db.loadGens(tx); err != nil {
			return fmt.Errorf("export generations: %w", err)
		}
		if v := cfg.Get(keyHandleKey); v != nil {
			p, err := open(kindHandleKey, v)
			if err != nil {
				return fmt.Errorf("handle key record: %w", err)
			}
			if len(p) != HandleKeyBytes {
				return fmt.Errorf("handle key of %d bytes: %w", len(p), ErrCorrupt)
			}
			db.handleKey = bytes.Clone(p)
			return nil
		}
		key := make([]byte, HandleKeyBytes)
		if _, err := io.ReadFull(db.rand, key); err != nil {
			return fmt.Errorf("generate handle key: %w", err)
		}
		if err := cfg.Put(keyHandleKey, seal(kindHandleKey, key)); err != nil {
			return fmt.Errorf("put handle key: %w", err)
		}
		db.handleKey = key
		return nil
	})
	if err == nil && crashed {
		db.log.Warn().Msg("meta db was not closed cleanly: cached attributes, lookups and listings of before are retired")
	}
	return err
}

// Close records a clean shutdown (the export generations and the marker
// Open looks for) and closes the database. Whoever persists freshness
// records (cachefs.FS) must have stopped before. No call may follow.
func (db *DB) Close() error {
	cerr := db.markClean()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close meta db: %w", err)
	}
	if cerr != nil {
		// The next Open takes it as a crash: safe, only colder.
		return fmt.Errorf("close meta db: mark clean shutdown: %w", cerr)
	}
	db.log.Info().Msg("meta db closed")
	return nil
}

// HandleKey returns the 32-byte key for handle MACs, created on the first
// open and kept in the database. The caller must not modify it.
func (db *DB) HandleKey() []byte { return db.handleKey }

// ExportID returns the id of the export with the given path, allocating
// the next free id (1, 2, ...) the first time a path is seen. Ids are
// persisted, so reordering exports in the configuration keeps them.
func (db *DB) ExportID(path string) (uint16, error) {
	var id uint16
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketExports)
		if v := b.Get([]byte(path)); v != nil {
			n, err := openUint64(kindExportID, v)
			if err != nil {
				return err
			}
			if n == 0 || n > 0xffff {
				return fmt.Errorf("export id %d: %w", n, ErrCorrupt)
			}
			id = uint16(n)
			return nil
		}
		cfg := tx.Bucket(bucketConfig)
		next, err := counter(cfg, keyNextExport)
		if err != nil {
			return err
		}
		if next > 0xffff {
			return ErrExhausted
		}
		if err := cfg.Put(keyNextExport, sealUint64(kindCounter, next+1)); err != nil {
			return err
		}
		id = uint16(next)
		return b.Put([]byte(path), sealUint64(kindExportID, next))
	})
	if err != nil {
		return 0, fmt.Errorf("export id of %q: %w", path, err)
	}
	return id, nil
}

// counter reads a counter from the config bucket; an absent one starts at 1.
func counter(cfg *bolt.Bucket, key []byte) (uint64, error) {
	v := cfg.Get(key)
	if v == nil {
		return 1, nil
	}
	n, err := openUint64(kindCounter, v)
	if err != nil {
		return 0, fmt.Errorf("counter %s: %w", key, err)
	}
	return n, nil
}

// Get returns the inode record of ino, ErrNotFound if there is none.
func (db *DB) Get(ino uint64) (Inode, error) {
	var in Inode
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		in, err = getInode(tx, ino)
		return err
	})
	if err != nil {
		return Inode{}, fmt.Errorf("get inode %d: %w", ino, err)
	}
	return in, nil
}

func getInode(tx *bolt.Tx, ino uint64) (Inode, error) {
	v := tx.Bucket(bucketInodes).Get(inoKey(ino))
	if v == nil {
		return Inode{}, ErrNotFound
	}
	return decodeInode(ino, v)
}

// lookupIndex returns the inode the (export, fileID) index points to, or
// ok=false when there is none.
func lookupIndex(tx *bolt.Tx, export uint16, fileID uint64) (ino uint64, ok bool, err error) {
	v := tx.Bucket(bucketIndex).Get(indexKey(export, fileID))
	if v == nil {
		return 0, false, nil
	}
	ino, err = openUint64(kindIndex, v)
	if err != nil {
		return 0, false, fmt.Errorf("index of fileid %d: %w", fileID, err)
	}
	return ino, true, nil
}

// Entry is an object seen at the origin: under Name in the directory
// inode Parent (0 and "" for an export root).
type Entry struct {
	Parent uint64
	Name   string
	Type   backend.FileType
	FileID uint64
	Handle []byte
}

// Map returns the inode records of entries of one export, in order,
// creating records for objects not seen before and updating the location
// (parent, name, handle) of known ones. The same origin object (same
// FileID, hard links included) always maps to the same inode; an object
// whose FileID is known with another type is taken as a new object (the
// origin reused the number) and gets a new inode.
//
// Entries that are already up to date cost one read transaction per
// batch; the rest one write transaction per batch of mapBatchEntries.
func (db *DB) Map(export uint16, entries []Entry) ([]Inode, error) {
	out := make([]Inode, len(entries))
	for start := 0; start < len(entries); start += mapBatchEntries {
		end := min(start+mapBatchEntries, len(entries))
		if err := db.mapBatch(export, entries[start:end], out[start:end]); err != nil {
			return nil, fmt.Errorf("map %d entries of export %d: %w", len(entries), export, err)
		}
	}
	return out, nil
}

func (db *DB) mapBatch(export uint16, entries []Entry, out []Inode) error {
	for _, e := range entries {
		if err := validInode(Inode{Name: e.Name, Handle: e.Handle}); err != nil {
			return fmt.Errorf("entry %q: %w", e.Name, err)
		}
	}
	var pending []int
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for i, e := range entries {
			in, ok, err := current(tx, export, e)
			if err != nil {
				return err
			}
			if ok {
				out[i] = in
				continue
			}
			pending = append(pending, i)
		}
		return nil
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	// Re-check inside the write transaction: another writer may have
	// mapped the same objects since the read. Concurrent callers share
	// one commit (bolt's Batch, group commit). Batch may run this
	// function more than once, each time in a fresh transaction after the
	// last one rolled back, and runs the functions of one batch one after
	// another in one transaction: it reads the inode counter from the
	// transaction it is given, overwrites every out[i] it sets and keeps
	// nothing else, so a rerun does no harm.
	return db.bolt.Batch(func(tx *bolt.Tx) error {
		alloc, err := newAllocator(tx, db.rand)
		if err != nil {
			return err
		}
		for _, i := range pending {
			in, err := upsert(tx, export, entries[i], alloc)
			if err != nil {
				return err
			}
			out[i] = in
		}
		return alloc.flush()
	})
}

// current returns the record for e when it exists and is up to date.
func current(tx *bolt.Tx, export uint16, e Entry) (Inode, bool, error) {
	ino, ok, err := lookupIndex(tx, export, e.FileID)
	if err != nil || !ok {
		return Inode{}, false, err
	}
	in, err := getInode(tx, ino)
	if errors.Is(err, ErrNotFound) {
		return Inode{}, false, nil
	}
	if err != nil {
		return Inode{}, false, err
	}
	if in.Export != export || in.Type != e.Type || in.Parent != e.Parent || in.Name != e.Name || !bytes.Equal(in.Handle, e.Handle) {
		return in, false, nil
	}
	return in, true, nil
}

// upsert maps e inside a write transaction.
func upsert(tx *bolt.Tx, export uint16, e Entry, alloc *allocator) (Inode, error) {
	inodes := tx.Bucket(bucketInodes)
	ino, ok, err := lookupIndex(tx, export, e.FileID)
	if err != nil {
		return Inode{}, err
	}
	if ok {
		in, err := getInode(tx, ino)
		switch {
		case err == nil && in.Type == e.Type && in.Export == export:
			if in.Parent == e.Parent && in.Name == e.Name && bytes.Equal(in.Handle, e.Handle) {
				return in, nil
			}
			in.Parent, in.Name, in.Handle = e.Parent, e.Name, bytes.Clone(e.Handle)
			if err := inodes.Put(inoKey(ino), encodeInode(in)); err != nil {
				return Inode{}, err
			}
			return in, nil
		case err == nil:
			// The origin reused the FileID for an object of another
			// type: the old object is gone.
			if err := inodes.Delete(inoKey(ino)); err != nil {
				return Inode{}, err
			}
		case !errors.Is(err, ErrNotFound):
			return Inode{}, err
		}
	}
	in, err := alloc.allocate(Inode{
		Export: export, Type: e.Type, Parent: e.Parent, Name: e.Name,
		Handle: bytes.Clone(e.Handle), FileID: e.FileID,
	})
	if err != nil {
		return Inode{}, err
	}
	if err := tx.Bucket(bucketIndex).Put(indexKey(export, e.FileID), sealUint64(kindIndex, in.Ino)); err != nil {
		return Inode{}, err
	}
	return in, nil
}

// allocator hands out inode numbers inside one write transaction and
// stores the counter once, at flush, before the transaction commits.
type allocator struct {
	tx   *bolt.Tx
	rnd  io.Reader
	next uint64
}

func newAllocator(tx *bolt.Tx, rnd io.Reader) (*allocator, error) {
	next, err := counter(tx.Bucket(bucketConfig), keyNextIno)
	if err != nil {
		return nil, err
	}
	// Generations are drawn through a buffer: one read of the random
	// source per 1024 inodes, not one system call each.
	return &allocator{tx: tx, rnd: bufio.NewReaderSize(rnd, 4096), next: next}, nil
}

// allocate gives in the next inode number and a random generation and
// stores it.
func (a *allocator) allocate(in Inode) (Inode, error) {
	var g [4]byte
	if _, err := io.ReadFull(a.rnd, g[:]); err != nil {
		return Inode{}, fmt.Errorf("generation: %w", err)
	}
	in.Ino = a.next
	a.next++
	in.Gen = binary.BigEndian.Uint32(g[:]) | 1 // never 0, so a zeroed NodeID never matches
	if err := a.tx.Bucket(bucketInodes).Put(inoKey(in.Ino), encodeInode(in)); err != nil {
		return Inode{}, err
	}
	return in, nil
}

// flush stores the counter; it must run before the transaction commits.
func (a *allocator) flush() error {
	return a.tx.Bucket(bucketConfig).Put(keyNextIno, sealUint64(kindCounter, a.next))
}

// Root returns the root inode of an export, creating it on first use and
// refreshing its handle and FileID when the origin reports new ones (the
// root is found by export, not by FileID, so a remounted origin keeps its
// root inode).
func (db *DB) Root(export uint16, handle []byte, fileID uint64) (Inode, error) {
	if err := validInode(Inode{Handle: handle}); err != nil {
		return Inode{}, fmt.Errorf("root of export %d: %w", export, err)
	}
	var out Inode
	key := binary.BigEndian.AppendUint16(nil, export)
	fresh := func(in Inode) bool { return in.FileID == fileID && bytes.Equal(in.Handle, handle) }
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRoots).Get(key)
		if v == nil {
			return nil
		}
		ino, err := openUint64(kindIndex, v)
		if err != nil {
			return err
		}
		out, err = getInode(tx, ino)
		return err
	})
	if err == nil && out.Ino != 0 && fresh(out) {
		return out, nil
	}
	if err != nil {
		return Inode{}, fmt.Errorf("root of export %d: %w", export, err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		roots, idx := tx.Bucket(bucketRoots), tx.Bucket(bucketIndex)
		if v := roots.Get(key); v != nil {
			ino, err := openUint64(kindIndex, v)
			if err != nil {
				return err
			}
			in, err := getInode(tx, ino)
			if err != nil {
				return err
			}
			if fresh(in) {
				out = in
				return nil
			}
			if cur, ok, err := lookupIndex(tx, export, in.FileID); err == nil && ok && cur == ino {
				if err := idx.Delete(indexKey(export, in.FileID)); err != nil {
					return err
				}
			}
			in.Handle, in.FileID = bytes.Clone(handle), fileID
			if err := tx.Bucket(bucketInodes).Put(inoKey(ino), encodeInode(in)); err != nil {
				return err
			}
			out = in
		} else {
			alloc, err := newAllocator(tx, db.rand)
			if err != nil {
				return err
			}
			in, err := alloc.allocate(Inode{Export: export, Type: backend.TypeDirectory, Handle: bytes.Clone(handle), FileID: fileID})
			if err != nil {
				return err
			}
			if err := alloc.flush(); err != nil {
				return err
			}
			if err := roots.Put(key, sealUint64(kindIndex, in.Ino)); err != nil {
				return err
			}
			out = in
		}
		return idx.Put(indexKey(export, fileID), sealUint64(kindIndex, out.Ino))
	})
	if err != nil {
		return Inode{}, fmt.Errorf("root of export %d: %w", export, err)
	}
	return out, nil
}

// Relocate records that ino now lives under name in parent with the given
// origin handle (after a rename, or when a stale handle was re-resolved).
func (db *DB) Relocate(ino, parent uint64, name string, handle []byte) (Inode, error) {
	if err := validInode(Inode{Name: name, Handle: handle}); err != nil {
		return Inode{}, fmt.Errorf("relocate inode %d: %w", ino, err)
	}
	var out Inode
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		in, err := getInode(tx, ino)
		if err != nil {
			return err
		}
		in.Parent, in.Name, in.Handle = parent, name, bytes.Clone(handle)
		out = in
		return tx.Bucket(bucketInodes).Put(inoKey(ino), encodeInode(in))
	})
	if err != nil {
		return Inode{}, fmt.Errorf("relocate inode %d to %d/%q: %w", ino, parent, name, err)
	}
	return out, nil
}

// Forget deletes the record of ino (its object is gone at the origin), its
// FileID index entry, its pin, and what the freshness tier holds about it
// (attributes; for a directory its listing and the lookups made in it). Its number is never handed out again, so a
// handle naming it is stale from now on. Forgetting an absent inode is
// not an error (retries are safe).
func (db *DB) Forget(ino uint64) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		in, err := getInode(tx, ino)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur, ok, err := lookupIndex(tx, in.Export, in.FileID); err != nil {
			return err
		} else if ok && cur == ino {
			if err := tx.Bucket(bucketIndex).Delete(indexKey(in.Export, in.FileID)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketPins).Delete(inoKey(ino)); err != nil {
			return err
		}
		if err := forgetFresh(tx, ino); err != nil {
			return err
		}
		return tx.Bucket(bucketInodes).Delete(inoKey(ino))
	})
	if err != nil {
		return fmt.Errorf("forget inode %d: %w", ino, err)
	}
	return nil
}

// ByFileID returns the inode the origin object (export, fileID) maps to,
// ErrNotFound if it has none.
func (db *DB) ByFileID(export uint16, fileID uint64) (Inode, error) {
	var in Inode
	err := db.bolt.View(func(tx *bolt.Tx) error {
		ino, ok, err := lookupIndex(tx, export, fileID)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		in, err = getInode(tx, ino)
		return err
	})
	if err != nil {
		return Inode{}, fmt.Errorf("inode of fileid %d in export %d: %w", fileID, export, err)
	}
	return in, nil
}
