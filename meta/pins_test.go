package meta

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nascache/nascache/backend"
)

func TestPinsPersistAndFollowForget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := openTest(t, path)
	root, err := db.Root(1, []byte("root"), 2)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := db.Map(1, []Entry{
		{Parent: root.Ino, Name: "a", Type: backend.TypeRegular, FileID: 10, Handle: []byte("ha")},
		{Parent: root.Ino, Name: "b", Type: backend.TypeRegular, FileID: 11, Handle: []byte("hb")},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := ins[0].Ino, ins[1].Ino
	for _, ino := range []uint64{a, b, a} { // pinning twice is harmless
		if err := db.SetPinned(ino, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetPinned(1<<40, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pin of an unknown inode: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path)
	got, err := db.Pinned()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{a, b}) {
		t.Fatalf("pins after reopen %v, want [%d %d]", got, a, b)
	}
	if err := db.SetPinned(a, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Forget(b); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Pinned(); err != nil || len(got) != 0 {
		t.Fatalf("pins after unpin and forget: %v, %v", got, err)
	}
}
