package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nascache/nascache/backend"
	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{Logger: zerolog.Nop(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestHandleKeyAndExportIDsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	key := bytes.Clone(db.HandleKey())
	if len(key) != HandleKeyBytes || bytes.Equal(key, make([]byte, HandleKeyBytes)) {
		t.Fatalf("handle key %x", key)
	}
	for i, p := range []string{"/a", "/b", "/a", "/c"} {
		id, err := db.ExportID(p)
		if err != nil {
			t.Fatal(err)
		}
		want := []uint16{1, 2, 1, 3}[i]
		if id != want {
			t.Fatalf("ExportID(%q) = %d, want %d", p, id, want)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	defer db.Close()
	if !bytes.Equal(db.HandleKey(), key) {
		t.Fatal("handle key changed across reopen")
	}
	// Reordered: ids stay.
	for _, c := range []struct {
		path string
		id   uint16
	}{{"/c", 3}, {"/b", 2}, {"/a", 1}, {"/d", 4}} {
		id, err := db.ExportID(c.path)
		if err != nil || id != c.id {
			t.Fatalf("ExportID(%q) = %d, %v; want %d", c.path, id, err, c.id)
		}
	}
}

func TestMapRoundTripAndHardLinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	root, err := db.Root(1, []byte("root"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if root.Ino == 0 || root.Gen == 0 || root.Parent != 0 || root.Type != backend.TypeDirectory {
		t.Fatalf("root %+v", root)
	}
	ents := []Entry{
		{Parent: root.Ino, Name: "a", Type: backend.TypeRegular, FileID: 10, Handle: []byte("ha")},
		{Parent: root.Ino, Name: "d", Type: backend.TypeDirectory, FileID: 11, Handle: []byte("hd")},
		{Parent: root.Ino, Name: "a-link", Type: backend.TypeRegular, FileID: 10, Handle: []byte("hal")},
	}
	got, err := db.Map(1, ents)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Ino != got[2].Ino {
		t.Fatalf("hard links mapped to %d and %d", got[0].Ino, got[2].Ino)
	}
	if got[0].Ino == got[1].Ino || got[1].Ino == root.Ino {
		t.Fatal("distinct objects share an inode")
	}
	// Another export with the same FileID is another object.
	other, err := db.Map(2, ents[:1])
	if err != nil {
		t.Fatal(err)
	}
	if other[0].Ino == got[0].Ino {
		t.Fatal("exports share an inode")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	defer db.Close()
	in, err := db.Get(got[1].Ino)
	if err != nil {
		t.Fatal(err)
	}
	want := got[1]
	if in.Ino != want.Ino || in.Gen != want.Gen || in.Export != 1 || in.Type != want.Type ||
		in.Parent != root.Ino || in.Name != "d" || string(in.Handle) != "hd" || in.FileID != 11 {
		t.Fatalf("after reopen %+v, want %+v", in, want)
	}
	// The root survives with the same identity.
	r2, err := db.Root(1, []byte("root"), 2)
	if err != nil || r2.Ino != root.Ino || r2.Gen != root.Gen {
		t.Fatalf("root after reopen %+v, %v", r2, err)
	}
	// New objects never reuse numbers, even after Forget.
	if err := db.Forget(got[1].Ino); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Get(got[1].Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Forget: %v", err)
	}
	again, err := db.Map(1, ents[1:2])
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Ino <= other[0].Ino {
		t.Fatalf("inode %d reused or went backwards", again[0].Ino)
	}
}

func TestMapRelocateAndTypeChange(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	e := Entry{Parent: 1, Name: "x", Type: backend.TypeRegular, FileID: 7, Handle: []byte("h1")}
	first, err := db.Map(1, []Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	e.Name, e.Handle = "y", []byte("h2")
	moved, err := db.Map(1, []Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	if moved[0].Ino != first[0].Ino || moved[0].Name != "y" || string(moved[0].Handle) != "h2" {
		t.Fatalf("moved %+v", moved[0])
	}
	r, err := db.Relocate(first[0].Ino, 5, "z", []byte("h3"))
	if err != nil || r.Parent != 5 || r.Name != "z" {
		t.Fatalf("relocate %+v %v", r, err)
	}
	e.Type = backend.TypeDirectory
	reused, err := db.Map(1, []Entry{e})
	if err != nil {
		t.Fatal(err)
	}
	if reused[0].Ino == first[0].Ino {
		t.Fatal("FileID reused with another type kept the old inode")
	}
	if _, err := db.Get(first[0].Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old record: %v", err)
	}
}

// TestMapLargeBatchTransactions maps entries spanning several batches and
// checks that re-mapping unchanged entries writes nothing.
func TestMapLargeBatchTransactions(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	ents := make([]Entry, 2*mapBatchEntries+1000)
	for i := range ents {
		ents[i] = Entry{Parent: 1, Name: fmt.Sprintf("f%06d", i), Type: backend.TypeRegular, FileID: uint64(i + 100), Handle: []byte(fmt.Sprintf("h%d", i))}
	}
	got, err := db.Map(1, ents)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool, len(got))
	for i, in := range got {
		if in.Name != ents[i].Name || seen[in.Ino] {
			t.Fatalf("entry %d: %+v", i, in)
		}
		seen[in.Ino] = true
	}
	writes := func() int64 { s := db.bolt.Stats(); return s.TxStats.GetWrite() }
	writesBefore := writes()
	again, err := db.Map(1, ents)
	if err != nil {
		t.Fatal(err)
	}
	if w := writes() - writesBefore; w != 0 {
		t.Fatalf("re-mapping unchanged entries wrote %d pages", w)
	}
	for i := range again {
		if again[i].Ino != got[i].Ino {
			t.Fatalf("entry %d remapped", i)
		}
	}
}

// TestCorruptionDetected flips bits in stored values and checks that every
// reader reports ErrCorrupt rather than using the value.
func TestCorruptionDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	got, err := db.Map(1, []Entry{{Parent: 1, Name: "a", Type: backend.TypeRegular, FileID: 3, Handle: []byte("h")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExportID("/x"); err != nil {
		t.Fatal(err)
	}
	corrupt := func(bucket, key []byte) {
		t.Helper()
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			v := bytes.Clone(b.Get(key))
			v[len(v)/2] ^= 0x40
			return b.Put(key, v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	corrupt(bucketInodes, inoKey(got[0].Ino))
	if _, err := db.Get(got[0].Ino); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of corrupt inode: %v", err)
	}
	if _, err := db.Map(1, []Entry{{Parent: 1, Name: "a", Type: backend.TypeRegular, FileID: 3, Handle: []byte("h")}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Map over corrupt inode: %v", err)
	}
	corrupt(bucketExports, []byte("/x"))
	if _, err := db.ExportID("/x"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ExportID of corrupt record: %v", err)
	}
	corrupt(bucketConfig, keyHandleKey)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{Logger: zerolog.Nop(), NoSync: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with corrupt handle key: %v", err)
	}
}

func TestRecordChecks(t *testing.T) {
	in := Inode{Ino: 9, Gen: 77, Export: 3, Type: backend.TypeSymlink, Parent: 4, Name: "n", Handle: []byte{1, 2, 3}, FileID: 99}
	enc := encodeInode(in)
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", enc[:5]},
		{"truncated", enc[:len(enc)-1]},
		{"wrong kind", seal(kindIndex, enc[2:len(enc)-4])},
		{"wrong version", func() []byte {
			b := bytes.Clone(enc[:len(enc)-4])
			b[1] = 2
			return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
		}()},
		{"payload too short", seal(kindInode, []byte{1, 2, 3})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeInode(9, c.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decode: %v", err)
			}
		})
	}
	out, err := decodeInode(9, enc)
	if err != nil {
		t.Fatal(err)
	}
	if out.Name != in.Name || !bytes.Equal(out.Handle, in.Handle) || out.Gen != in.Gen || out.FileID != in.FileID || out.Type != in.Type || out.Parent != in.Parent || out.Export != in.Export {
		t.Fatalf("round trip %+v != %+v", out, in)
	}
}

func FuzzDecodeInode(f *testing.F) {
	f.Add(encodeInode(Inode{Gen: 1, Export: 1, Type: backend.TypeRegular, Name: "x", Handle: []byte("h"), FileID: 5}))
	f.Add([]byte{5, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeInode(1, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(encodeInode(in), b) {
			t.Fatal("decoded record does not re-encode to the same bytes")
		}
	})
}

// TestMapConcurrent maps the same objects from many goroutines at once:
// every caller must get the same inode for the same object.
func TestMapConcurrent(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	ents := make([]Entry, 200)
	for i := range ents {
		ents[i] = Entry{Parent: 1, Name: fmt.Sprintf("e%d", i), Type: backend.TypeRegular, FileID: uint64(i + 1), Handle: []byte{byte(i)}}
	}
	const workers = 8
	results := make([][]Inode, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			results[w], errs[w] = db.Map(1, ents)
		})
	}
	wg.Wait()
	for w := range workers {
		if errs[w] != nil {
			t.Fatal(errs[w])
		}
		for i := range ents {
			if results[w][i].Ino != results[0][i].Ino || results[w][i].Gen != results[0][i].Gen {
				t.Fatalf("worker %d entry %d: %+v vs %+v", w, i, results[w][i], results[0][i])
			}
		}
	}
}

// TestCrashCopy copies the database file while it is open, as a crash
// right after a commit would leave it, and checks that the copy opens with
// every committed record and a counter that never hands a number out twice.
func TestCrashCopy(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "meta.db"), Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.Map(1, []Entry{
		{Parent: 1, Name: "a", Type: backend.TypeRegular, FileID: 5, Handle: []byte("a")},
		{Parent: 1, Name: "b", Type: backend.TypeRegular, FileID: 6, Handle: []byte("b")},
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db2 := openTest(t, crashed)
	defer db2.Close()
	if !bytes.Equal(db2.HandleKey(), db.HandleKey()) {
		t.Fatal("handle key lost")
	}
	for _, want := range got {
		in, err := db2.Get(want.Ino)
		if err != nil || in.Gen != want.Gen || in.Name != want.Name {
			t.Fatalf("inode %d after crash: %+v %v", want.Ino, in, err)
		}
	}
	more, err := db2.Map(1, []Entry{{Parent: 1, Name: "c", Type: backend.TypeRegular, FileID: 7, Handle: []byte("c")}})
	if err != nil {
		t.Fatal(err)
	}
	if more[0].Ino <= got[1].Ino {
		t.Fatalf("inode %d handed out again after crash", more[0].Ino)
	}
}
