package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nascache/nascache/backend"
	bolt "go.etcd.io/bbolt"
)

// The freshness tier: what an origin answered about objects (attributes),
// names (LOOKUP, negative answers included) and whole directories
// (listings), kept so that a restart does not have to ask a slow origin
// again. Every such record carries a Stamp: the export, the export's
// generation when the origin was asked, and the wall-clock time it was
// asked. cachefs decides from the stamp whether an answer may be used
// (cachefs/fresh.go); meta guarantees what the generations mean:
//
//   - An export's generation moves forward on every namespace change made
//     through nascache (Generation.EndChange), and never goes back, also
//     across restarts.
//   - A write (WriteFresh, WriteListing) stores a record only if its
//     generation is the export's current one and no change of that export
//     is in flight, and stores the export's current generation in the
//     same transaction. So the persisted generation of an export is never
//     below that of any persisted record of it.
//   - Close stores every export's generation (one more where a change is
//     still in flight) together with the clean-shutdown marker. Open
//     removes the marker durably before anything is served; if it was
//     missing (a crash, kill -9), Open first moves every export's
//     generation one past its persisted value, which retires every record
//     persisted before the crash, whatever namespace changes the crashed
//     process made and did not get to persist.

// Stamp says when, and under which generation of which export, an origin
// answer was taken.
type Stamp struct {
	Export uint16
	Gen    uint64
	// Asked is wall-clock time, so a TTL keeps running across restarts.
	Asked time.Time
}

// AttrRecord is the persisted attributes of one inode.
type AttrRecord struct {
	Stamp
	Attr backend.Attr
}

// LookupRecord is the persisted answer of one LOOKUP.
type LookupRecord struct {
	Stamp
	// Ino is the inode the name maps to; 0: the name does not exist.
	Ino uint64
}

// ListedName is one entry of a directory listing as it is written.
type ListedName struct {
	Name string
	Ino  uint64
}

// Listed is one entry of a listing as it is read back: its inode record
// and, when meta has them, its attributes (the caller checks their stamp).
type Listed struct {
	Name    string
	Inode   Inode
	Attr    AttrRecord
	HasAttr bool
}

// Listing is a complete persisted directory listing, in name order.
type Listing struct {
	Stamp
	Entries []Listed
}

// FreshBatch is one group of records for WriteFresh.
type FreshBatch struct {
	Attrs []AttrPut
	// DropAttrs are deleted whatever their stamp.
	DropAttrs []uint64
	Lookups   []LookupPut
}

// AttrPut stores the attributes of inode Ino.
type AttrPut struct {
	Ino uint64
	Rec AttrRecord
}

// LookupPut stores the answer for Name in directory Dir.
type LookupPut struct {
	Dir  uint64
	Name string
	Rec  LookupRecord
}

// listingTxEntries bounds the entries one transaction of WriteListing
// writes or deletes: a 100,000-entry listing is a handful of commits.
const listingTxEntries = 25000

// Generation is the change counter of one export. Its methods are safe
// for concurrent use.
type Generation struct {
	gen      atomic.Uint64
	changing atomic.Int64
}

// Load returns the current generation.
func (g *Generation) Load() uint64 { return g.gen.Load() }

// BeginChange marks a namespace change as in flight: nothing of the export
// is persisted until the matching EndChange.
func (g *Generation) BeginChange() { g.changing.Add(1) }

// EndChange moves the generation on, retiring every answer taken before,
// and ends what BeginChange started.
func (g *Generation) EndChange() {
	g.gen.Add(1)
	g.changing.Add(-1)
}

// current reports whether a record of generation gen may be persisted.
func (g *Generation) current(gen uint64) bool {
	return g.changing.Load() == 0 && g.gen.Load() == gen
}

// gens is the in-memory table of export generations, loaded at Open.
type gens struct {
	mu    sync.Mutex // guards byExp
	byExp map[uint16]*Generation
}

// Generation returns the change counter of an export (created at 0 for
// an export nothing was persisted for). The same export always gets the
// same counter.
func (db *DB) Generation(export uint16) *Generation {
	db.gens.mu.Lock()
	defer db.gens.mu.Unlock()
	g := db.gens.byExp[export]
	if g == nil {
		g = &Generation{}
		db.gens.byExp[export] = g
	}
	return g
}

// loadGens reads the persisted generations; after an unclean shutdown it
// first moves each one on (see the top of this file). It runs in Open's
// transaction.
func (db *DB) loadGens(tx *bolt.Tx) (crashed bool, err error) {
	cfg, b := tx.Bucket(bucketConfig), tx.Bucket(bucketGens)
	clean := cfg.Get(keyClean) != nil
	if clean {
		if _, err := open(kindClean, cfg.Get(keyClean)); err != nil {
			return false, fmt.Errorf("clean marker: %w", err)
		}
	}
	type kv struct {
		export uint16
		gen    uint64
	}
	var all []kv
	err = b.ForEach(func(k, v []byte) error {
		if len(k) != 2 {
			return fmt.Errorf("generation key of %d bytes: %w", len(k), ErrCorrupt)
		}
		g, err := openUint64(kindGen, v)
		if err != nil {
			return fmt.Errorf("generation of export %d: %w", binary.BigEndian.Uint16(k), err)
		}
		all = append(all, kv{binary.BigEndian.Uint16(k), g})
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, e := range all {
		if !clean {
			e.gen++
			if err := b.Put(genKey(e.export), sealUint64(kindGen, e.gen)); err != nil {
				return false, fmt.Errorf("bump generation of export %d: %w", e.export, err)
			}
		}
		g := &Generation{}
		g.gen.Store(e.gen)
		db.gens.byExp[e.export] = g
	}
	if err := cfg.Delete(keyClean); err != nil {
		return false, fmt.Errorf("remove clean marker: %w", err)
	}
	return !clean && len(all) > 0, nil
}

// markClean stores the final generations and the clean-shutdown marker.
func (db *DB) markClean() error {
	db.gens.mu.Lock()
	final := make(map[uint16]uint64, len(db.gens.byExp))
	for id, g := range db.gens.byExp {
		n := g.gen.Load()
		if g.changing.Load() != 0 {
			n++ // a change in flight may have reached the origin
		}
		final[id] = n
	}
	db.gens.mu.Unlock()
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for id, n := range final {
			if err := putGen(tx, id, n); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketConfig).Put(keyClean, seal(kindClean, nil))
	})
}

// putGen stores gen as the export's generation unless a larger one is
// stored already.
func putGen(tx *bolt.Tx, export uint16, gen uint64) error {
	b := tx.Bucket(bucketGens)
	if v := b.Get(genKey(export)); v != nil {
		if old, err := openUint64(kindGen, v); err == nil && old >= gen {
			return nil
		}
	}
	if err := b.Put(genKey(export), sealUint64(kindGen, gen)); err != nil {
		return fmt.Errorf("put generation of export %d: %w", export, err)
	}
	return nil
}

// SetConsistency records the consistency mode an export is served with
// (any string the caller uses to name it) and reports whether a different
// one was recorded before. A caller that changed the mode retires the
// export's persisted answers: one taken under ttl must not be trusted
// forever under immutable, nor one older than a period under strict (when
// nothing was cached and the origin may have changed).
func (db *DB) SetConsistency(export uint16, mode string) (changed bool, err error) {
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketModes)
		if v := b.Get(genKey(export)); v != nil {
			p, err := open(kindMode, v)
			if err == nil && string(p) == mode {
				return nil
			}
			changed = true // a corrupt record counts as a change
		}
		return b.Put(genKey(export), seal(kindMode, []byte(mode)))
	})
	if err != nil {
		return false, fmt.Errorf("consistency of export %d: %w", export, err)
	}
	return changed, nil
}

// Attr returns the persisted attributes of ino: ErrNotFound when there
// are none, ErrCorrupt when the record fails its check.
func (db *DB) Attr(ino uint64) (AttrRecord, error) {
	var r AttrRecord
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAttrs).Get(inoKey(ino))
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeAttrRecord(v)
		return err
	})
	if err != nil {
		return AttrRecord{}, fmt.Errorf("attributes of inode %d: %w", ino, err)
	}
	return r, nil
}

// Lookup returns the persisted LOOKUP answer for name in dir.
func (db *DB) Lookup(dir uint64, name string) (LookupRecord, error) {
	var r LookupRecord
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLookups).Get(nameKey(dir, name))
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, err = decodeLookupRecord(v)
		return err
	})
	if err != nil {
		return LookupRecord{}, fmt.Errorf("lookup of %q in %d: %w", name, dir, err)
	}
	return r, nil
}

// Listing returns the complete persisted listing of dir, with the inode
// record and attributes of every entry, in one read transaction. A
// listing that is partly written, names an inode meta no longer has, or
// holds a corrupt record is not returned (ErrNotFound or ErrCorrupt).
func (db *DB) Listing(dir uint64) (Listing, error) {
	var l Listing
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketListings).Get(inoKey(dir))
		if v == nil {
			return ErrNotFound
		}
		stamp, count, err := decodeListingHeader(v)
		if err != nil {
			return err
		}
		l.Stamp = stamp
		l.Entries = make([]Listed, 0, min(count, 1<<20)) // count passed its CRC
		attrs := tx.Bucket(bucketAttrs)
		prefix := inoKey(dir)
		c := tx.Bucket(bucketListed).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			ino, err := openUint64(kindListed, v)
			if err != nil {
				return fmt.Errorf("entry %q: %w", k[8:], err)
			}
			in, err := getInode(tx, ino)
			if err != nil {
				return fmt.Errorf("entry %q: inode %d: %w", k[8:], ino, err)
			}
			e := Listed{Name: string(k[8:]), Inode: in}
			if av := attrs.Get(inoKey(ino)); av != nil {
				if e.Attr, err = decodeAttrRecord(av); err == nil {
					e.HasAttr = true
				}
			}
			l.Entries = append(l.Entries, e)
		}
		if uint64(len(l.Entries)) != count {
			return fmt.Errorf("listing holds %d entries, header says %d: %w", len(l.Entries), count, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return Listing{}, fmt.Errorf("listing of %d: %w", dir, err)
	}
	return l, nil
}

// WriteFresh stores a batch of attributes and lookups in one transaction.
// A record whose generation is not its export's current one, or whose
// export has a change in flight, is skipped (it could be stale); it
// returns how many records were stored. DropAttrs are always deleted.
func (db *DB) WriteFresh(b FreshBatch) (int, error) {
	stored := 0
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		stored = 0 // the function may run again after a failed commit
		touched := make(map[uint16]uint64)
		attrs, lookups := tx.Bucket(bucketAttrs), tx.Bucket(bucketLookups)
		for _, ino := range b.DropAttrs {
			if err := attrs.Delete(inoKey(ino)); err != nil {
				return fmt.Errorf("drop attributes of %d: %w", ino, err)
			}
		}
		for _, p := range b.Attrs {
			if !db.Generation(p.Rec.Export).current(p.Rec.Gen) {
				continue
			}
			if err := attrs.Put(inoKey(p.Ino), encodeAttrRecord(p.Rec)); err != nil {
				return fmt.Errorf("put attributes of %d: %w", p.Ino, err)
			}
			touched[p.Rec.Export] = p.Rec.Gen
			stored++
		}
		for _, p := range b.Lookups {
			if len(p.Name) > MaxNameBytes {
				continue
			}
			if !db.Generation(p.Rec.Export).current(p.Rec.Gen) {
				continue
			}
			if err := lookups.Put(nameKey(p.Dir, p.Name), encodeLookupRecord(p.Rec)); err != nil {
				return fmt.Errorf("put lookup of %q in %d: %w", p.Name, p.Dir, err)
			}
			touched[p.Rec.Export] = p.Rec.Gen
			stored++
		}
		for id, gen := range touched {
			if err := putGen(tx, id, gen); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("write %d attributes and %d lookups: %w", len(b.Attrs), len(b.Lookups), err)
	}
	return stored, nil
}

// errNotCurrent stops WriteListing when the listing's generation retired.
var errNotCurrent = errors.New("meta: generation no longer current")

// WriteListing replaces the persisted listing of dir with entries (in
// name order) taken under stamp. It commits in transactions of at most
// listingTxEntries entries: the first removes the old header, so readers
// see no listing until the last one stores the new header. Each
// transaction first checks that the stamp's generation is still current
// and stops (reporting stored=false, no error) when it is not; what was
// written then is replaced by the next listing of dir or removed by
// Forget of dir.
func (db *DB) WriteListing(dir uint64, stamp Stamp, entries []ListedName) (stored bool, err error) {
	g := db.Generation(stamp.Export)
	prefix := inoKey(dir)
	step := func(fn func(tx *bolt.Tx) error) error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			if !g.current(stamp.Gen) {
				return errNotCurrent
			}
			return fn(tx)
		})
	}
	// Remove the header, then the old entries, a bounded number per
	// transaction.
	for first, done := true, false; !done; first = false {
		err = step(func(tx *bolt.Tx) error {
			if first {
				if err := tx.Bucket(bucketListings).Delete(prefix); err != nil {
					return err
				}
			}
			n, err := deletePrefix(tx.Bucket(bucketListed), prefix, listingTxEntries)
			done = n < listingTxEntries
			return err
		})
		if err != nil {
			break
		}
	}
	for start := 0; err == nil && start < len(entries); start += listingTxEntries {
		part := entries[start:min(start+listingTxEntries, len(entries))]
		err = step(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketListed)
			for _, e := range part {
				if e.Name == "" || len(e.Name) > MaxNameBytes {
					return fmt.Errorf("entry name of %d bytes: %w", len(e.Name), ErrInvalid)
				}
				if err := b.Put(nameKey(dir, e.Name), sealUint64(kindListed, e.Ino)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		err = step(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketListings).Put(prefix, encodeListingHeader(stamp, uint64(len(entries)))); err != nil {
				return err
			}
			return putGen(tx, stamp.Export, stamp.Gen)
		})
	}
	switch {
	case errors.Is(err, errNotCurrent):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("write listing of %d (%d entries): %w", dir, len(entries), err)
	}
	return true, nil
}

// deletePrefix deletes up to limit keys of b that start with prefix and
// returns how many it deleted.
func deletePrefix(b *bolt.Bucket, prefix []byte, limit int) (int, error) {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < limit; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// forgetFresh deletes everything the freshness tier holds about ino: its
// attributes, and, when it was a directory, its listing and the lookups
// made in it. It runs in Forget's transaction.
func forgetFresh(tx *bolt.Tx, ino uint64) error {
	key := inoKey(ino)
	if err := tx.Bucket(bucketAttrs).Delete(key); err != nil {
		return err
	}
	if err := tx.Bucket(bucketListings).Delete(key); err != nil {
		return err
	}
	for _, name := range [][]byte{bucketListed, bucketLookups} {
		for {
			n, err := deletePrefix(tx.Bucket(name), key, listingTxEntries)
			if err != nil {
				return err
			}
			if n < listingTxEntries {
				break
			}
		}
	}
	return nil
}

// Record payloads of the freshness tier (version 1 of each kind), integers
// big endian, times as seconds (i64) and nanoseconds (u32) since 1970:
//
//	stamp:   export u16 | gen u64 | asked sec i64 | asked nsec u32
//	kindAttr:    stamp | type u8 | mode u32 | nlink u32 | uid u32 | gid u32 |
//	             size u64 | used u64 | rdevmajor u32 | rdevminor u32 |
//	             fsid u64 | fileid u64 | atime | mtime | ctime (sec i64, nsec u32 each)
//	kindLookup:  stamp | ino u64 (0: does not exist)
//	kindListing: stamp | entry count u64
//	kindListed:  ino u64
const (
	stampBytes = 2 + 8 + 12
	attrBytes  = 1 + 4*4 + 8*2 + 4*2 + 8*2 + 12*3
)

func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

func readTime(p []byte) (time.Time, error) {
	nsec := binary.BigEndian.Uint32(p[8:])
	if nsec >= 1e9 {
		return time.Time{}, fmt.Errorf("nanoseconds %d: %w", nsec, ErrCorrupt)
	}
	return time.Unix(int64(binary.BigEndian.Uint64(p)), int64(nsec)).UTC(), nil
}

func appendStamp(b []byte, s Stamp) []byte {
	b = binary.BigEndian.AppendUint16(b, s.Export)
	b = binary.BigEndian.AppendUint64(b, s.Gen)
	return appendTime(b, s.Asked)
}

func readStamp(p []byte) (Stamp, error) {
	asked, err := readTime(p[10:])
	return Stamp{Export: binary.BigEndian.Uint16(p), Gen: binary.BigEndian.Uint64(p[2:]), Asked: asked}, err
}

func encodeAttrRecord(r AttrRecord) []byte {
	a := r.Attr
	b := make([]byte, 0, stampBytes+attrBytes)
	b = appendStamp(b, r.Stamp)
	b = append(b, byte(a.Type))
	for _, v := range []uint32{a.Mode, a.Nlink, a.UID, a.GID} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = binary.BigEndian.AppendUint64(b, a.SizeBytes)
	b = binary.BigEndian.AppendUint64(b, a.UsedBytes)
	b = binary.BigEndian.AppendUint32(b, a.RdevMajor)
	b = binary.BigEndian.AppendUint32(b, a.RdevMinor)
	b = binary.BigEndian.AppendUint64(b, a.FSID)
	b = binary.BigEndian.AppendUint64(b, a.FileID)
	for _, t := range []time.Time{a.Atime, a.Mtime, a.Ctime} {
		b = appendTime(b, t)
	}
	return seal(kindAttr, b)
}

func decodeAttrRecord(v []byte) (AttrRecord, error) {
	p, err := open(kindAttr, v)
	if err != nil {
		return AttrRecord{}, err
	}
	if len(p) != stampBytes+attrBytes {
		return AttrRecord{}, fmt.Errorf("attribute payload of %d bytes: %w", len(p), ErrCorrupt)
	}
	var r AttrRecord
	if r.Stamp, err = readStamp(p); err != nil {
		return AttrRecord{}, err
	}
	p = p[stampBytes:]
	a := &r.Attr
	a.Type = backend.FileType(p[0])
	a.Mode = binary.BigEndian.Uint32(p[1:])
	a.Nlink = binary.BigEndian.Uint32(p[5:])
	a.UID = binary.BigEndian.Uint32(p[9:])
	a.GID = binary.BigEndian.Uint32(p[13:])
	a.SizeBytes = binary.BigEndian.Uint64(p[17:])
	a.UsedBytes = binary.BigEndian.Uint64(p[25:])
	a.RdevMajor = binary.BigEndian.Uint32(p[33:])
	a.RdevMinor = binary.BigEndian.Uint32(p[37:])
	a.FSID = binary.BigEndian.Uint64(p[41:])
	a.FileID = binary.BigEndian.Uint64(p[49:])
	for i, t := range []*time.Time{&a.Atime, &a.Mtime, &a.Ctime} {
		if *t, err = readTime(p[57+12*i:]); err != nil {
			return AttrRecord{}, err
		}
	}
	return r, nil
}

func encodeLookupRecord(r LookupRecord) []byte {
	b := appendStamp(make([]byte, 0, stampBytes+8), r.Stamp)
	return seal(kindLookup, binary.BigEndian.AppendUint64(b, r.Ino))
}

func decodeLookupRecord(v []byte) (LookupRecord, error) {
	p, err := open(kindLookup, v)
	if err != nil {
		return LookupRecord{}, err
	}
	if len(p) != stampBytes+8 {
		return LookupRecord{}, fmt.Errorf("lookup payload of %d bytes: %w", len(p), ErrCorrupt)
	}
	s, err := readStamp(p)
	if err != nil {
		return LookupRecord{}, err
	}
	return LookupRecord{Stamp: s, Ino: binary.BigEndian.Uint64(p[stampBytes:])}, nil
}

func encodeListingHeader(s Stamp, count uint64) []byte {
	b := appendStamp(make([]byte, 0, stampBytes+8), s)
	return seal(kindListing, binary.BigEndian.AppendUint64(b, count))
}

func decodeListingHeader(v []byte) (Stamp, uint64, error) {
	p, err := open(kindListing, v)
	if err != nil {
		return Stamp{}, 0, err
	}
	if len(p) != stampBytes+8 {
		return Stamp{}, 0, fmt.Errorf("listing header of %d bytes: %w", len(p), ErrCorrupt)
	}
	s, err := readStamp(p)
	if err != nil {
		return Stamp{}, 0, err
	}
	return s, binary.BigEndian.Uint64(p[stampBytes:]), nil
}

// nameKey is the key of name in directory dir: a prefix scan over dir
// yields its names in byte order.
func nameKey(dir uint64, name string) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(name)), dir), name...)
}

func genKey(export uint16) []byte { return binary.BigEndian.AppendUint16(nil, export) }
