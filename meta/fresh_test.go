package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nascache/nascache/backend"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

var when = time.Date(2025, 3, 4, 5, 6, 7, 891011, time.UTC)

func sampleAttr(fileID uint64) backend.Attr {
	return backend.Attr{
		Type: backend.TypeRegular, Mode: 0o4755, Nlink: 2, UID: 1000, GID: 100,
		SizeBytes: 1 << 40, UsedBytes: 4096, RdevMajor: 8, RdevMinor: 1, FSID: 77, FileID: fileID,
		Atime: when, Mtime: when.Add(-time.Hour), Ctime: time.Unix(-5, 999_999_999).UTC(),
	}
}

func sameAttr(a, b backend.Attr) bool {
	return a.Atime.Equal(b.Atime) && a.Mtime.Equal(b.Mtime) && a.Ctime.Equal(b.Ctime) &&
		a.Type == b.Type && a.Mode == b.Mode && a.Nlink == b.Nlink && a.UID == b.UID && a.GID == b.GID &&
		a.SizeBytes == b.SizeBytes && a.UsedBytes == b.UsedBytes && a.RdevMajor == b.RdevMajor &&
		a.RdevMinor == b.RdevMinor && a.FSID == b.FSID && a.FileID == b.FileID
}

func TestFreshRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	g := db.Generation(1)
	if db.Generation(1) != g || g.Load() != 0 {
		t.Fatalf("generation %d", g.Load())
	}
	st := Stamp{Export: 1, Gen: 0, Asked: when}
	n, err := db.WriteFresh(FreshBatch{
		Attrs: []AttrPut{{Ino: 5, Rec: AttrRecord{Stamp: st, Attr: sampleAttr(50)}}},
		Lookups: []LookupPut{
			{Dir: 2, Name: "here", Rec: LookupRecord{Stamp: st, Ino: 5}},
			{Dir: 2, Name: "gone", Rec: LookupRecord{Stamp: st}},
		},
	})
	if err != nil || n != 3 {
		t.Fatalf("WriteFresh = %d, %v", n, err)
	}
	a, err := db.Attr(5)
	if err != nil || a.Stamp.Export != 1 || !a.Asked.Equal(when) || !sameAttr(a.Attr, sampleAttr(50)) {
		t.Fatalf("Attr = %+v, %v", a, err)
	}
	if _, err := db.Attr(6); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent attributes: %v", err)
	}
	for name, want := range map[string]uint64{"here": 5, "gone": 0} {
		l, err := db.Lookup(2, name)
		if err != nil || l.Ino != want || !l.Asked.Equal(when) {
			t.Fatalf("Lookup(%q) = %+v, %v", name, l, err)
		}
	}
	if _, err := db.Lookup(2, "other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent lookup: %v", err)
	}

	// A listing: entries come back in name order with inodes and attributes.
	ins, err := db.Map(1, []Entry{
		{Parent: 2, Name: "b", Type: backend.TypeRegular, FileID: 50, Handle: []byte("hb")},
		{Parent: 2, Name: "a", Type: backend.TypeDirectory, FileID: 51, Handle: []byte("ha")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteFresh(FreshBatch{Attrs: []AttrPut{{Ino: ins[0].Ino, Rec: AttrRecord{Stamp: st, Attr: sampleAttr(50)}}}}); err != nil {
		t.Fatal(err)
	}
	ok, err := db.WriteListing(2, st, []ListedName{{"a", ins[1].Ino}, {"b", ins[0].Ino}})
	if err != nil || !ok {
		t.Fatalf("WriteListing = %v, %v", ok, err)
	}
	l, err := db.Listing(2)
	if err != nil || len(l.Entries) != 2 || l.Gen != 0 || !l.Asked.Equal(when) {
		t.Fatalf("Listing = %+v, %v", l, err)
	}
	if e := l.Entries[0]; e.Name != "a" || e.Inode.Ino != ins[1].Ino || e.HasAttr {
		t.Fatalf("entry 0 %+v", e)
	}
	if e := l.Entries[1]; e.Name != "b" || e.Inode.Ino != ins[0].Ino || e.Inode.Gen != ins[0].Gen || !e.HasAttr || !sameAttr(e.Attr.Attr, sampleAttr(50)) {
		t.Fatalf("entry 1 %+v", e)
	}
	// Replaced by a shorter listing.
	if ok, err := db.WriteListing(2, st, []ListedName{{"b", ins[0].Ino}}); err != nil || !ok {
		t.Fatalf("WriteListing = %v, %v", ok, err)
	}
	if l, err := db.Listing(2); err != nil || len(l.Entries) != 1 || l.Entries[0].Name != "b" {
		t.Fatalf("replaced listing = %+v, %v", l, err)
	}
	if _, err := db.Listing(3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent listing: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything survives a clean restart, generations included.
	db = openTest(t, path)
	defer db.Close()
	if got := db.Generation(1).Load(); got != 0 {
		t.Fatalf("generation after clean restart %d", got)
	}
	if a, err := db.Attr(5); err != nil || !sameAttr(a.Attr, sampleAttr(50)) {
		t.Fatalf("Attr after restart = %+v, %v", a, err)
	}
	if l, err := db.Listing(2); err != nil || len(l.Entries) != 1 {
		t.Fatalf("Listing after restart = %+v, %v", l, err)
	}
}

func TestFreshSkipsRetiredGenerations(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	g := db.Generation(1)
	old := Stamp{Export: 1, Gen: g.Load(), Asked: when}
	g.BeginChange()
	g.EndChange()
	cur := Stamp{Export: 1, Gen: g.Load(), Asked: when}
	n, err := db.WriteFresh(FreshBatch{
		Attrs:   []AttrPut{{Ino: 1, Rec: AttrRecord{Stamp: old}}, {Ino: 2, Rec: AttrRecord{Stamp: cur}}},
		Lookups: []LookupPut{{Dir: 1, Name: "x", Rec: LookupRecord{Stamp: old}}},
	})
	if err != nil || n != 1 {
		t.Fatalf("WriteFresh = %d, %v; want only the current record", n, err)
	}
	if _, err := db.Attr(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retired record stored: %v", err)
	}
	if ok, err := db.WriteListing(9, old, []ListedName{{"a", 1}}); ok || err != nil {
		t.Fatalf("WriteListing of a retired generation = %v, %v", ok, err)
	}
	// While a change is in flight nothing is stored.
	g.BeginChange()
	if n, err := db.WriteFresh(FreshBatch{Attrs: []AttrPut{{Ino: 3, Rec: AttrRecord{Stamp: cur}}}}); err != nil || n != 0 {
		t.Fatalf("WriteFresh during a change = %d, %v", n, err)
	}
	if ok, err := db.WriteListing(9, cur, []ListedName{{"a", 1}}); ok || err != nil {
		t.Fatalf("WriteListing during a change = %v, %v", ok, err)
	}
	g.EndChange()
	if _, err := db.Listing(9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("listing: %v", err)
	}
	// Drops apply whatever the generation.
	if _, err := db.WriteFresh(FreshBatch{DropAttrs: []uint64{2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Attr(2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped record: %v", err)
	}
}

// crash closes the bolt file without the clean-shutdown marker, as kill -9
// would leave it.
func crash(t *testing.T, db *DB) {
	t.Helper()
	if err := db.bolt.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFreshGenerationsAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	g := db.Generation(4)
	for range 3 {
		g.BeginChange()
		g.EndChange()
	}
	st := Stamp{Export: 4, Gen: 3, Asked: when}
	if n, err := db.WriteFresh(FreshBatch{Attrs: []AttrPut{{Ino: 1, Rec: AttrRecord{Stamp: st}}}}); err != nil || n != 1 {
		t.Fatalf("WriteFresh = %d, %v", n, err)
	}
	g.BeginChange()
	g.EndChange() // 4, never persisted by a write
	crash(t, db)
	// After the crash the generation is one past the persisted one (3),
	// so the record of generation 3 is retired.
	db = openTest(t, path)
	if got := db.Generation(4).Load(); got != 4 {
		t.Fatalf("generation after crash %d, want 4", got)
	}
	// A clean close keeps it; a change in flight at close moves it on.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	if got := db.Generation(4).Load(); got != 4 {
		t.Fatalf("generation after clean restart %d, want 4", got)
	}
	db.Generation(4).BeginChange()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	if got := db.Generation(4).Load(); got != 5 {
		t.Fatalf("generation after close during a change %d, want 5", got)
	}
	// The marker is gone once opened: a crash now bumps again.
	crash(t, db)
	db = openTest(t, path)
	defer db.Close()
	if got := db.Generation(4).Load(); got != 6 {
		t.Fatalf("generation after second crash %d, want 6", got)
	}
}

func TestFreshCorruptionIsDetected(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	st := Stamp{Export: 1, Asked: when}
	ins, err := db.Map(1, []Entry{{Parent: 2, Name: "a", Type: backend.TypeRegular, FileID: 5, Handle: []byte("h")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteFresh(FreshBatch{
		Attrs:   []AttrPut{{Ino: ins[0].Ino, Rec: AttrRecord{Stamp: st}}},
		Lookups: []LookupPut{{Dir: 2, Name: "a", Rec: LookupRecord{Stamp: st, Ino: ins[0].Ino}}},
	}); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.WriteListing(2, st, []ListedName{{"a", ins[0].Ino}}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	flip := func(bucket, key []byte) {
		t.Helper()
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			v := bytes.Clone(b.Get(key))
			v[len(v)/2] ^= 0x10
			return b.Put(key, v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	flip(bucketAttrs, inoKey(ins[0].Ino))
	if _, err := db.Attr(ins[0].Ino); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt attributes: %v", err)
	}
	// A listing with corrupt attributes of an entry still lists it,
	// without them.
	if l, err := db.Listing(2); err != nil || l.Entries[0].HasAttr {
		t.Fatalf("listing over corrupt attributes: %+v, %v", l, err)
	}
	flip(bucketLookups, nameKey(2, "a"))
	if _, err := db.Lookup(2, "a"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt lookup: %v", err)
	}
	flip(bucketListed, nameKey(2, "a"))
	if _, err := db.Listing(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt listing entry: %v", err)
	}
	flip(bucketListings, inoKey(2))
	if _, err := db.Listing(2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt listing header: %v", err)
	}
	// A header that promises more entries than there are.
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketListings).Put(inoKey(7), encodeListingHeader(st, 3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Listing(7); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short listing: %v", err)
	}
}

func TestForgetDropsFresh(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	st := Stamp{Export: 1, Asked: when}
	ins, err := db.Map(1, []Entry{
		{Parent: 1, Name: "d", Type: backend.TypeDirectory, FileID: 5, Handle: []byte("d")},
		{Parent: 1, Name: "d2", Type: backend.TypeDirectory, FileID: 6, Handle: []byte("d2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, d2 := ins[0].Ino, ins[1].Ino
	kids := make([]Entry, 100)
	for i := range kids {
		kids[i] = Entry{Parent: d, Name: fmt.Sprintf("k%03d", i), Type: backend.TypeRegular, FileID: uint64(100 + i), Handle: []byte{byte(i)}}
	}
	kins, err := db.Map(1, kids)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]ListedName, len(kins))
	for i, in := range kins {
		names[i] = ListedName{in.Name, in.Ino}
	}
	for _, dir := range []uint64{d, d2} {
		if ok, err := db.WriteListing(dir, st, names); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if _, err := db.WriteFresh(FreshBatch{
			Attrs:   []AttrPut{{Ino: dir, Rec: AttrRecord{Stamp: st}}},
			Lookups: []LookupPut{{Dir: dir, Name: "nope", Rec: LookupRecord{Stamp: st}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Forget(d); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Attr(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attributes of a forgotten inode: %v", err)
	}
	if _, err := db.Listing(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("listing of a forgotten directory: %v", err)
	}
	if _, err := db.Lookup(d, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup in a forgotten directory: %v", err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketListed).Cursor().Seek(inoKey(d))
		if k != nil && bytes.HasPrefix(k, inoKey(d)) {
			return fmt.Errorf("entry %q of the forgotten listing left", k[8:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The other directory keeps everything.
	if l, err := db.Listing(d2); err != nil || len(l.Entries) != len(kids) {
		t.Fatalf("other listing: %d entries, %v", len(l.Entries), err)
	}
	if _, err := db.Lookup(d2, "nope"); err != nil {
		t.Fatalf("other lookup: %v", err)
	}
	// A listing naming a forgotten inode is not served.
	if err := db.Forget(kins[3].Ino); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Listing(d2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("listing with a forgotten entry: %v", err)
	}
}

// TestWriteListingLarge writes a listing spanning several transactions
// and checks it reads back whole and that rewriting it does not grow the
// database.
func TestWriteListingLarge(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	const n = 2*listingTxEntries + 17
	names := make([]ListedName, n)
	ents := make([]Entry, n)
	for i := range names {
		ents[i] = Entry{Parent: 1, Name: fmt.Sprintf("f%06d", i), Type: backend.TypeRegular, FileID: uint64(10 + i), Handle: []byte(fmt.Sprintf("h%d", i))}
	}
	ins, err := db.Map(1, ents)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		names[i] = ListedName{in.Name, in.Ino}
	}
	st := Stamp{Export: 1, Asked: when}
	if ok, err := db.WriteListing(1, st, names); err != nil || !ok {
		t.Fatal(ok, err)
	}
	l, err := db.Listing(1)
	if err != nil || len(l.Entries) != n || l.Entries[n-1].Name != fmt.Sprintf("f%06d", n-1) {
		t.Fatalf("listing: %d entries, %v", len(l.Entries), err)
	}
	size := func() int64 {
		var s int64
		_ = db.bolt.View(func(tx *bolt.Tx) error { s = tx.Size(); return nil })
		return s
	}
	first := size()
	for range 2 {
		if ok, err := db.WriteListing(1, st, names); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	if grown := size() - first; grown > first/2 {
		t.Fatalf("rewriting the same listing grew the file from %d by %d bytes", first, grown)
	}
}

// writeV1 makes a database as schema version 1 left it.
func writeV1(t *testing.T, path string, version uint64) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketConfig, bucketExports, bucketRoots, bucketInodes, bucketIndex, bucketPins} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		cfg := tx.Bucket(bucketConfig)
		if err := cfg.Put(keySchema, sealUint64(kindSchema, version)); err != nil {
			return err
		}
		if err := cfg.Put(keyHandleKey, seal(kindHandleKey, bytes.Repeat([]byte{7}, HandleKeyBytes))); err != nil {
			return err
		}
		in := Inode{Ino: 1, Gen: 9, Export: 1, Type: backend.TypeDirectory, Handle: []byte("root"), FileID: 2}
		if err := tx.Bucket(bucketInodes).Put(inoKey(1), encodeInode(in)); err != nil {
			return err
		}
		return tx.Bucket(bucketRoots).Put(binary.BigEndian.AppendUint16(nil, 1), sealUint64(kindIndex, 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaUpgradeFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	writeV1(t, path, 1)
	db := openTest(t, path)
	if !bytes.Equal(db.HandleKey(), bytes.Repeat([]byte{7}, HandleKeyBytes)) {
		t.Fatal("handle key lost in the upgrade")
	}
	if in, err := db.Get(1); err != nil || in.Gen != 9 {
		t.Fatalf("inode after upgrade: %+v %v", in, err)
	}
	if _, err := db.WriteFresh(FreshBatch{Attrs: []AttrPut{{Ino: 1, Rec: AttrRecord{Stamp: Stamp{Export: 1, Asked: when}}}}}); err != nil {
		t.Fatalf("fresh tier after upgrade: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	err := func() error {
		bdb, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			return err
		}
		defer bdb.Close()
		return bdb.View(func(tx *bolt.Tx) error {
			v, err := openUint64(kindSchema, tx.Bucket(bucketConfig).Get(keySchema))
			if err != nil || v != schemaVersion {
				return fmt.Errorf("schema %d, %v", v, err)
			}
			return nil
		})
	}()
	if err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	defer db.Close()
	if _, err := db.Attr(1); err != nil {
		t.Fatalf("attributes after reopen: %v", err)
	}

	future := filepath.Join(t.TempDir(), "future.db")
	writeV1(t, future, schemaVersion+1)
	if _, err := Open(future, Options{Logger: zerolog.Nop(), NoSync: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of schema %d: %v", schemaVersion+1, err)
	}
}

func TestFreshRecordChecks(t *testing.T) {
	st := Stamp{Export: 3, Gen: 1 << 50, Asked: when}
	for _, b := range [][]byte{
		nil,
		encodeAttrRecord(AttrRecord{Stamp: st})[:20],
		seal(kindAttr, []byte{1, 2}),
		seal(kindLookup, make([]byte, stampBytes+9)),
		seal(kindListing, make([]byte, stampBytes)),
		// nanoseconds out of range
		seal(kindLookup, append(binary.BigEndian.AppendUint32(make([]byte, 18), 2e9), make([]byte, 8)...)),
	} {
		if _, err := decodeAttrRecord(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeAttrRecord(%x): %v", b, err)
		}
		if _, err := decodeLookupRecord(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeLookupRecord(%x): %v", b, err)
		}
		if _, _, err := decodeListingHeader(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeListingHeader(%x): %v", b, err)
		}
	}
	// A record of one kind is not accepted as another.
	if _, err := decodeLookupRecord(encodeListingHeader(st, 5)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("listing header taken as a lookup: %v", err)
	}
}

func FuzzDecodeFresh(f *testing.F) {
	st := Stamp{Export: 3, Gen: 7, Asked: when}
	f.Add(encodeAttrRecord(AttrRecord{Stamp: st, Attr: sampleAttr(9)}))
	f.Add(encodeLookupRecord(LookupRecord{Stamp: st, Ino: 4}))
	f.Add(encodeListingHeader(st, 100000))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error, again func() []byte) {
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
				return
			}
			if !bytes.Equal(again(), b) {
				t.Fatal("decoded record does not re-encode to the same bytes")
			}
		}
		a, err := decodeAttrRecord(b)
		check(err, func() []byte { return encodeAttrRecord(a) })
		l, err := decodeLookupRecord(b)
		check(err, func() []byte { return encodeLookupRecord(l) })
		s, n, err := decodeListingHeader(b)
		check(err, func() []byte { return encodeListingHeader(s, n) })
	})
}

func TestSetConsistency(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	for i, c := range []struct {
		mode    string
		changed bool
	}{{"immutable", false}, {"immutable", false}, {"ttl:2s", true}, {"ttl:2s", false}, {"immutable", true}} {
		changed, err := db.SetConsistency(3, c.mode)
		if err != nil || changed != c.changed {
			t.Fatalf("step %d: SetConsistency(%q) = %v, %v; want %v", i, c.mode, changed, err, c.changed)
		}
	}
	if changed, err := db.SetConsistency(4, "strict"); err != nil || changed {
		t.Fatalf("other export: %v, %v", changed, err)
	}
}
