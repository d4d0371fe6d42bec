package nfsserver

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv3"
	"github.com/buildbarn/go-xdr/pkg/runtime"
	"github.com/nascache/nascache/cachefs"
)

func TestNFSStatus(t *testing.T) {
	for _, tc := range []struct {
		err   error
		want  nfsv3.Nfsstat3
		known bool
	}{
		{nil, nfsv3.NFS3_OK, true},
		{cachefs.ErrStale, nfsv3.NFS3ERR_STALE, true},
		{fmt.Errorf("getattr ino 7: %w", cachefs.ErrStale), nfsv3.NFS3ERR_STALE, true},
		{cachefs.ErrJukebox, nfsv3.NFS3ERR_JUKEBOX, true},
		{fmt.Errorf("read: %w", cachefs.ErrUnavailable), nfsv3.NFS3ERR_JUKEBOX, true},
		{cachefs.ErrNotExist, nfsv3.NFS3ERR_NOENT, true},
		{cachefs.ErrExist, nfsv3.NFS3ERR_EXIST, true},
		{cachefs.ErrNotDir, nfsv3.NFS3ERR_NOTDIR, true},
		{cachefs.ErrIsDir, nfsv3.NFS3ERR_ISDIR, true},
		{cachefs.ErrNotEmpty, nfsv3.NFS3ERR_NOTEMPTY, true},
		{cachefs.ErrAccess, nfsv3.NFS3ERR_ACCES, true},
		{cachefs.ErrPerm, nfsv3.NFS3ERR_PERM, true},
		{cachefs.ErrNameTooLong, nfsv3.NFS3ERR_NAMETOOLONG, true},
		{cachefs.ErrNoSpace, nfsv3.NFS3ERR_NOSPC, true},
		{cachefs.ErrDquot, nfsv3.NFS3ERR_DQUOT, true},
		{cachefs.ErrReadOnly, nfsv3.NFS3ERR_ROFS, true},
		{cachefs.ErrInvalid, nfsv3.NFS3ERR_INVAL, true},
		{cachefs.ErrNotSupported, nfsv3.NFS3ERR_NOTSUPP, true},
		{cachefs.ErrFileTooBig, nfsv3.NFS3ERR_FBIG, true},
		{cachefs.ErrXDev, nfsv3.NFS3ERR_XDEV, true},
		{cachefs.ErrMlink, nfsv3.NFS3ERR_MLINK, true},
		{cachefs.ErrNotSync, nfsv3.NFS3ERR_NOT_SYNC, true},
		{cachefs.ErrIO, nfsv3.NFS3ERR_IO, true},
		{cachefs.ErrBadHandle, nfsv3.NFS3ERR_BADHANDLE, true},
		{ErrBadHandle, nfsv3.NFS3ERR_BADHANDLE, true},
		{fmt.Errorf("client x: %w", ErrClientRefused), nfsv3.NFS3ERR_STALE, true},
		{statusErr(nfsv3.NFS3ERR_BAD_COOKIE, errors.New("x")), nfsv3.NFS3ERR_BAD_COOKIE, true},
		{fmt.Errorf("wrapped: %w", statusErr(nfsv3.NFS3ERR_TOOSMALL, nil)), nfsv3.NFS3ERR_TOOSMALL, true},
		{errors.New("mystery"), nfsv3.NFS3ERR_IO, false},
	} {
		got, known := nfsStatus(tc.err)
		if got != tc.want || known != tc.known {
			t.Errorf("nfsStatus(%v) = %s, %v; want %s, %v", tc.err, statusName(got), known, statusName(tc.want), tc.known)
		}
	}
}

func TestStatusErrorUnwraps(t *testing.T) {
	err := fmt.Errorf("lookup x: %w", statusErr(nfsv3.NFS3ERR_NOENT, cachefs.ErrNotExist))
	if !errors.Is(err, cachefs.ErrNotExist) {
		t.Fatal("StatusError does not unwrap to its cause")
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Status != nfsv3.NFS3ERR_NOENT {
		t.Fatal("StatusError not found")
	}
	if !strings.Contains(err.Error(), "NFS3ERR_NOENT") {
		t.Fatalf("message %q", err)
	}
}

func TestToFattr(t *testing.T) {
	ts := time.Unix(1234567890, 987654321)
	for _, tc := range []struct {
		name string
		in   cachefs.Attr
		want nfsv3.Fattr3
	}{
		{
			name: "setuid setgid sticky kept",
			in:   cachefs.Attr{Type: cachefs.TypeRegular, Mode: 07755, Nlink: 3, UID: 1, GID: 2, SizeBytes: 10, UsedBytes: 4096, FSID: 9, FileID: 42, Atime: ts, Mtime: ts, Ctime: ts},
			want: nfsv3.Fattr3{Type: nfsv3.NF3REG, Mode: 07755, Nlink: 3, Uid: 1, Gid: 2, Size: 10, Used: 4096, Fsid: 9, Fileid: 42,
				Atime: nfsv3.Nfstime3{Seconds: 1234567890, Nseconds: 987654321}, Mtime: nfsv3.Nfstime3{Seconds: 1234567890, Nseconds: 987654321}, Ctime: nfsv3.Nfstime3{Seconds: 1234567890, Nseconds: 987654321}},
		},
		{
			name: "type bits masked out of mode",
			in:   cachefs.Attr{Type: cachefs.TypeDirectory, Mode: 0o40000 | 01777},
			want: nfsv3.Fattr3{Type: nfsv3.NF3DIR, Mode: 01777},
		},
		{
			name: "device numbers",
			in:   cachefs.Attr{Type: cachefs.TypeBlock, Mode: 0o660, RdevMajor: 8, RdevMinor: 1},
			want: nfsv3.Fattr3{Type: nfsv3.NF3BLK, Mode: 0o660, Rdev: nfsv3.Specdata3{Specdata1: 8, Specdata2: 1}},
		},
		{
			name: "times before 1970 and after 2106 clamp",
			in:   cachefs.Attr{Type: cachefs.TypeFIFO, Atime: time.Unix(-5, 0), Mtime: time.Unix(math.MaxUint32+10, 5)},
			want: nfsv3.Fattr3{Type: nfsv3.NF3FIFO, Mtime: nfsv3.Nfstime3{Seconds: math.MaxUint32, Nseconds: 999999999}},
		},
		{
			name: "socket and symlink types",
			in:   cachefs.Attr{Type: cachefs.TypeSocket, Mode: 0o755},
			want: nfsv3.Fattr3{Type: nfsv3.NF3SOCK, Mode: 0o755},
		},
	} {
		if got := toFattr(&tc.in); got != tc.want {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	for ft, want := range map[cachefs.FileType]nfsv3.Ftype3{
		cachefs.TypeRegular: nfsv3.NF3REG, cachefs.TypeDirectory: nfsv3.NF3DIR, cachefs.TypeBlock: nfsv3.NF3BLK,
		cachefs.TypeChar: nfsv3.NF3CHR, cachefs.TypeSymlink: nfsv3.NF3LNK, cachefs.TypeSocket: nfsv3.NF3SOCK, cachefs.TypeFIFO: nfsv3.NF3FIFO,
	} {
		if got := toFattr(&cachefs.Attr{Type: ft}).Type; got != want {
			t.Errorf("type %v -> %v, want %v", ft, got, want)
		}
	}
}

func TestFromSattr(t *testing.T) {
	s := nfsv3.Sattr3{
		Mode:  &nfsv3.SetMode3_TRUE{Mode: 0o104755},
		Uid:   &nfsv3.SetUid3_TRUE{Uid: 5},
		Gid:   &nfsv3.SetGid3_default{},
		Size:  &nfsv3.SetSize3_TRUE{Size: 99},
		Atime: &nfsv3.SetAtime_default{SetIt: nfsv3.SET_TO_SERVER_TIME},
		Mtime: &nfsv3.SetMtime_SET_TO_CLIENT_TIME{Mtime: nfsv3.Nfstime3{Seconds: 10, Nseconds: 20}},
	}
	sa := fromSattr(&s)
	if sa.Mode == nil || *sa.Mode != 04755 || sa.UID == nil || *sa.UID != 5 || sa.GID != nil || sa.SizeBytes == nil || *sa.SizeBytes != 99 {
		t.Fatalf("fromSattr %+v", sa)
	}
	if sa.Atime != cachefs.TimeServer || sa.Mtime != cachefs.TimeClient || !sa.MtimeVal.Equal(time.Unix(10, 20)) {
		t.Fatalf("fromSattr times %+v", sa)
	}
	if got := fromSattr(&nfsv3.Sattr3{Mode: &nfsv3.SetMode3_default{}, Uid: &nfsv3.SetUid3_default{}, Gid: &nfsv3.SetGid3_default{}, Size: &nfsv3.SetSize3_default{},
		Atime: &nfsv3.SetAtime_default{}, Mtime: &nfsv3.SetMtime_default{}}); got.Mode != nil || got.Atime != cachefs.TimeDontChange || got.Mtime != cachefs.TimeDontChange {
		t.Fatalf("empty sattr %+v", got)
	}
}

func TestHandleCodec(t *testing.T) {
	c, err := newHandleCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []cachefs.NodeID{
		{Export: 1, Ino: 1, Gen: 1},
		{Export: 0, Ino: 0, Gen: 0},
		{Export: math.MaxUint16, Ino: math.MaxUint64, Gen: math.MaxUint32},
		{Export: 0x1234, Ino: 0x0102030405060708, Gen: 0x0a0b0c0d},
	} {
		h := c.encode(n)
		if len(h) != handleBytes || h[0] != handleVersion || h[1] != 0 {
			t.Fatalf("encode %+v = %x", n, h)
		}
		got, err := c.decode(h)
		if err != nil || got != n {
			t.Fatalf("round trip %+v: %+v %v", n, got, err)
		}
	}
	// The layout is fixed: a golden handle must keep decoding across
	// releases, or clients' handles go bad on upgrade.
	golden := c.encode(cachefs.NodeID{Export: 0x1234, Ino: 0x0102030405060708, Gen: 0x0a0b0c0d})
	if want := []byte{1, 0, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d}; !bytes.Equal(golden[:16], want) {
		t.Fatalf("handle body %x, want %x", golden[:16], want)
	}
	for i := range handleBytes {
		h := bytes.Clone(golden)
		h[i] ^= 0x80
		if _, err := c.decode(h); !errors.Is(err, ErrBadHandle) {
			t.Errorf("flipped byte %d: %v", i, err)
		}
	}
	if _, err := newHandleCodec(make([]byte, 16)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("short key: %v", err)
	}
}

func FuzzDecodeHandle(f *testing.F) {
	c, err := newHandleCodec(testKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.encode(cachefs.NodeID{Export: 1, Ino: 2, Gen: 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, h []byte) {
		n, err := c.decode(h)
		if err != nil {
			if !errors.Is(err, ErrBadHandle) {
				t.Fatalf("error %v does not match ErrBadHandle", err)
			}
			return
		}
		// Only a handle we made decodes, and it re-encodes identically.
		if !bytes.Equal(c.encode(n), h) {
			t.Fatalf("accepted %x, which re-encodes as %x", h, c.encode(n))
		}
	})
}

func TestConfigValidate(t *testing.T) {
	good := testConfig()
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"no exports", func(c *Config) { c.Exports = nil }, []string{"exports: none"}},
		{"short key", func(c *Config) { c.HandleKey = []byte("k") }, []string{"handle key"}},
		{"relative path and zero in flight", func(c *Config) {
			c.Exports[0].Path = "data"
			c.MaxInFlightPerConn = 0
		}, []string{"not absolute", "max in flight"}},
		{"unclean path", func(c *Config) { c.Exports[0].Path = "/data/" }, []string{"not clean"}},
		{"non-ASCII path", func(c *Config) { c.Exports[0].Path = "/d\xc3\xa9" }, []string{"not ASCII"}},
		{"duplicates", func(c *Config) { c.Exports = append(c.Exports, c.Exports[0]) }, []string{"id 1", "also used"}},
		{"bad prefix and squash", func(c *Config) {
			c.Exports[0].Clients = []netip.Prefix{{}}
			c.Exports[0].Squash = 9
		}, []string{"invalid prefix", "squash"}},
		{"no listen", func(c *Config) { c.Listen = "" }, []string{"listen"}},
	} {
		cfg := testConfig()
		cfg.Exports = append([]Export(nil), cfg.Exports...)
		tc.mutate(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
	}
	for in, want := range map[string]Squash{"none": SquashNone, "": SquashNone, "root": SquashRoot, "all": SquashAll} {
		if got, err := ParseSquash(in); err != nil || got != want {
			t.Errorf("ParseSquash(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseSquash("some"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseSquash(some): %v", err)
	}
}

func TestParseAuthSys(t *testing.T) {
	enc := func(name []byte, gids int, trailing int) []byte {
		var b bytes.Buffer
		runtime.WriteUnsignedInt(&b, 7)
		runtime.WriteVariableLengthOpaque(&b, ^uint32(0), name)
		runtime.WriteUnsignedInt(&b, 1000)
		runtime.WriteUnsignedInt(&b, 100)
		runtime.WriteUnsignedInt(&b, uint32(gids))
		for i := range gids {
			runtime.WriteUnsignedInt(&b, uint32(i+1))
		}
		b.Write(make([]byte, trailing))
		return b.Bytes()
	}
	for _, tc := range []struct {
		name string
		body []byte
		ok   bool
		gids int
	}{
		{"plain", enc([]byte("host"), 2, 0), true, 2},
		{"utf-8 host name", enc([]byte("h\xc3\xb6st"), 0, 0), true, 0},
		{"255-byte name", enc(bytes.Repeat([]byte("a"), 255), 16, 0), true, 16},
		{"256-byte name", enc(bytes.Repeat([]byte("a"), 256), 0, 0), false, 0},
		{"17 gids", enc([]byte("h"), 17, 0), false, 0},
		{"trailing", enc([]byte("h"), 1, 4), false, 0},
		{"truncated", enc([]byte("h"), 3, 0)[:30], false, 0},
		{"empty", nil, false, 0},
	} {
		cred, err := parseAuthSys(tc.body)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if tc.ok && (cred.UID != 1000 || cred.GID != 100 || len(cred.GIDs) != tc.gids) {
			t.Errorf("%s: cred %+v", tc.name, cred)
		}
	}
}
