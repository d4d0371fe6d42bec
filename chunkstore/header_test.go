package chunkstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		key  Key
		data []byte
	}{
		{"empty", Key{}, nil},
		{"small", testKey(1, 2), []byte("hello")},
		{"max fields", Key{Ino: ^uint64(0), Version: Version{0: 0xff, 15: 0xff}, Index: ^uint64(0)}, make([]byte, 4096)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b [headerSize]byte
			encodeHeader(&b, tc.key, tc.data)
			h, err := decodeHeader(b[:])
			if err != nil {
				t.Fatal(err)
			}
			want := header{key: tc.key, length: uint32(len(tc.data)), dataCRC: crc32.Checksum(tc.data, castagnoli)}
			if h != want {
				t.Fatalf("decoded %+v, want %+v", h, want)
			}
			if err := h.check(tc.key, int64(headerSize+len(tc.data))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHeaderGolden pins the on-disk layout: changing it breaks every
// cache on disk, so it must be a deliberate format change.
func TestHeaderGolden(t *testing.T) {
	var b [headerSize]byte
	encodeHeader(&b, Key{Ino: 0x0102030405060708, Version: Version{0xa0, 0xa1, 15: 0xaf}, Index: 0x1112131415161718}, []byte("chunk"))
	want := []byte{
		'N', 'C', 'H', 'K', 1, 0, 64, 0,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0xa0, 0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaf,
		0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
		5, 0, 0, 0,
	}
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum([]byte("chunk"), castagnoli))
	want = append(want, make([]byte, 12)...)
	want = binary.LittleEndian.AppendUint32(want, crc32.Checksum(want, castagnoli))
	if !bytes.Equal(b[:], want) {
		t.Fatalf("header bytes\n got %x\nwant %x", b[:], want)
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	valid := func() []byte {
		var b [headerSize]byte
		encodeHeader(&b, testKey(1, 1), []byte("data"))
		return b[:]
	}
	// resum fixes the header checksum after an edit, so that the check
	// after it is the one exercised.
	resum := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[offHeaderCRC:], crc32.Checksum(b[:offHeaderCRC], castagnoli))
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", valid()[:headerSize-1]},
		{"bad magic", resum(func() []byte { b := valid(); b[0] = 'X'; return b }())},
		{"bad header crc", func() []byte { b := valid(); b[offIno] ^= 1; return b }()},
		{"future format", resum(func() []byte { b := valid(); b[offFormat] = 2; return b }())},
		{"wrong header length", resum(func() []byte { b := valid(); b[offHeaderLen] = 65; return b }())},
		{"reserved not zero", resum(func() []byte { b := valid(); b[offReserved+3] = 1; return b }())},
		{"length too big", resum(func() []byte {
			b := valid()
			binary.LittleEndian.PutUint32(b[offLength:], maxDataLen+1)
			return b
		}())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeHeader(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeHeader = %v, want ErrCorrupt", err)
			}
		})
	}
	h, err := decodeHeader(valid())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key  Key
		size int64
	}{{testKey(1, 2), headerSize + 4}, {testKey(1, 1), headerSize + 5}, {testKey(1, 1), headerSize + 3}} {
		if err := h.check(c.key, c.size); !errors.Is(err, ErrCorrupt) {
			t.Errorf("check(%v, %d) = %v, want ErrCorrupt", c.key, c.size, err)
		}
	}
}

// FuzzDecodeHeader: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes (one encoding per header).
func FuzzDecodeHeader(f *testing.F) {
	var b [headerSize]byte
	encodeHeader(&b, testKey(1, 2), []byte("seed"))
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := decodeHeader(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		var out [headerSize]byte
		h.encode(&out)
		if !bytes.Equal(out[:], in[:headerSize]) {
			t.Fatalf("accepted %x but re-encodes to %x", in[:headerSize], out)
		}
	})
}

// FuzzParseFileName: names round-trip and parsing never panics.
func FuzzParseFileName(f *testing.F) {
	f.Add(testKey(1, 2).fileName())
	f.Add("zz")
	f.Fuzz(func(t *testing.T, name string) {
		k, ok := parseFileName(name)
		if ok && k.fileName() != name {
			t.Fatalf("parsed %q as %v, which is named %q", name, k, k.fileName())
		}
		if f, ok := parseFanoutName(name); ok && fanoutName(f) != name {
			t.Fatalf("fanout %q parsed as %d", name, f)
		}
	})
}

func TestFileNames(t *testing.T) {
	tests := []struct {
		key  Key
		name string
	}{
		{Key{}, "0000000000000000-00000000000000000000000000000000-0000000000000000"},
		{Key{Ino: 0xabc, Version: Version{0: 0x12, 15: 0xef}, Index: 7},
			"0000000000000abc-120000000000000000000000000000ef-0000000000000007"},
	}
	for _, tc := range tests {
		if got := tc.key.fileName(); got != tc.name {
			t.Errorf("fileName(%v) = %s, want %s", tc.key, got, tc.name)
		}
		if k, ok := parseFileName(tc.name); !ok || k != tc.key {
			t.Errorf("parseFileName(%s) = %v, %v", tc.name, k, ok)
		}
	}
	for _, bad := range []string{
		"", "x",
		"0000000000000ABC-120000000000000000000000000000ef-0000000000000007", // upper case
		"0000000000000abc_120000000000000000000000000000ef-0000000000000007",
		"0000000000000abc-120000000000000000000000000000ef-00000000000000070",
		"0000000000000abc-120000000000000000000000000000ef-000000000000000g",
		"-000000000000abc-120000000000000000000000000000ef-0000000000000007",
	} {
		if _, ok := parseFileName(bad); ok {
			t.Errorf("parseFileName(%q) accepted", bad)
		}
	}
	for f := range fanoutDirs {
		if g, ok := parseFanoutName(fanoutName(f)); !ok || g != f {
			t.Errorf("fanout %d round-trips to %d, %v", f, g, ok)
		}
	}
	for _, bad := range []string{"", "0", "000", "0g", "A0", "-1"} {
		if _, ok := parseFanoutName(bad); ok {
			t.Errorf("parseFanoutName(%q) accepted", bad)
		}
	}
}
