package cachefs

import (
	"errors"
	"testing"

	"github.com/nascache/nascache/backend"
)

func file(mode, uid, gid uint32) backend.Attr {
	return backend.Attr{Type: backend.TypeRegular, Mode: mode, UID: uid, GID: gid}
}

func dir(mode, uid, gid uint32) backend.Attr {
	return backend.Attr{Type: backend.TypeDirectory, Mode: mode, UID: uid, GID: gid}
}

var (
	rootCred  = Cred{UID: 0, GID: 0}
	alice     = Cred{UID: 1000, GID: 1000, GIDs: []uint32{1000, 50}}
	bob       = Cred{UID: 1001, GID: 1001}
	groupie50 = Cred{UID: 1002, GID: 7, GIDs: []uint32{50}}
)

func TestAllowed(t *testing.T) {
	cases := []struct {
		name string
		cred Cred
		a    backend.Attr
		want uint32
		ok   bool
	}{
		{"owner rw", alice, file(0o600, 1000, 1000), permRead | permWrite, true},
		{"owner no x", alice, file(0o600, 1000, 1000), permExec, false},
		{"owner class wins over group", alice, file(0o070, 1000, 1000), permRead, false},
		{"group via supplementary", groupie50, file(0o040, 1000, 50), permRead, true},
		{"group class wins over other", groupie50, file(0o407, 1000, 50), permRead, false},
		{"other", bob, file(0o604, 1000, 1000), permRead, true},
		{"other no write", bob, file(0o604, 1000, 1000), permWrite, false},
		{"root reads mode 0", rootCred, file(0, 1000, 1000), permRead | permWrite, true},
		{"root exec needs an x bit", rootCred, file(0o644, 1000, 1000), permExec, false},
		{"root exec with other x", rootCred, file(0o601, 1000, 1000), permExec, true},
		{"root searches dir mode 0", rootCred, dir(0, 1000, 1000), permExec, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := allowed(c.cred, c.a, c.want); got != c.ok {
				t.Fatalf("allowed = %v, want %v", got, c.ok)
			}
		})
	}
}

func TestReadWriteChecks(t *testing.T) {
	cases := []struct {
		name     string
		cred     Cred
		a        backend.Attr
		readErr  error
		writeErr error
	}{
		{"owner override on 0000", alice, file(0, 1000, 1000), nil, nil},
		{"exec-only reads", bob, file(0o001, 1000, 1000), nil, ErrAccess},
		{"no access", bob, file(0o640, 1000, 1000), ErrAccess, ErrAccess},
		{"other write", bob, file(0o602, 1000, 1000), ErrAccess, nil},
		{"directory", alice, dir(0o777, 1000, 1000), ErrIsDir, ErrIsDir},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := checkRead(c.cred, c.a); !errors.Is(err, c.readErr) && !(err == nil && c.readErr == nil) {
				t.Fatalf("read: %v, want %v", err, c.readErr)
			}
			if err := checkWrite(c.cred, c.a); !errors.Is(err, c.writeErr) && !(err == nil && c.writeErr == nil) {
				t.Fatalf("write: %v, want %v", err, c.writeErr)
			}
		})
	}
}

func TestSticky(t *testing.T) {
	sticky := dir(0o1777, 0, 0)
	cases := []struct {
		name   string
		cred   Cred
		dir    backend.Attr
		victim backend.Attr
		ok     bool
	}{
		{"owner of entry", alice, sticky, file(0o644, 1000, 1000), true},
		{"stranger", bob, sticky, file(0o644, 1000, 1000), false},
		{"owner of dir", bob, dir(0o1777, 1001, 0), file(0o644, 1000, 1000), true},
		{"root", rootCred, sticky, file(0o644, 1000, 1000), true},
		{"not sticky", bob, dir(0o777, 0, 0), file(0o644, 1000, 1000), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkSticky(c.cred, c.dir, c.victim)
			if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrPerm)) {
				t.Fatalf("checkSticky: %v, want ok=%v", err, c.ok)
			}
		})
	}
}

func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }

func TestCheckSetAttr(t *testing.T) {
	cases := []struct {
		name     string
		cred     Cred
		a        backend.Attr
		sa       SetAttr
		err      error
		wantMode uint32 // checked when sa.Mode is set and err is nil
	}{
		{"owner chmod", alice, file(0o644, 1000, 1000), SetAttr{Mode: u32(0o600)}, nil, 0o600},
		{"stranger chmod", bob, file(0o666, 1000, 1000), SetAttr{Mode: u32(0o600)}, ErrPerm, 0},
		{"root chmod", rootCred, file(0o644, 1000, 1000), SetAttr{Mode: u32(0o4755)}, nil, 0o4755},
		{"setgid kept in own group", alice, file(0o644, 1000, 50), SetAttr{Mode: u32(0o2755)}, nil, 0o2755},
		{"setgid cleared outside group", alice, file(0o644, 1000, 99), SetAttr{Mode: u32(0o2755)}, nil, 0o0755},
		{"setgid on dir kept", alice, dir(0o755, 1000, 99), SetAttr{Mode: u32(0o2755)}, nil, 0o2755},
		{"chown by owner", alice, file(0o644, 1000, 1000), SetAttr{UID: u32(1001)}, ErrPerm, 0},
		{"chown to self is a no-op", alice, file(0o644, 1000, 1000), SetAttr{UID: u32(1000)}, nil, 0},
		{"chown by root", rootCred, file(0o644, 1000, 1000), SetAttr{UID: u32(5), GID: u32(6)}, nil, 0},
		{"chgrp to own group", alice, file(0o644, 1000, 1000), SetAttr{GID: u32(50)}, nil, 0},
		{"chgrp to foreign group", alice, file(0o644, 1000, 1000), SetAttr{GID: u32(51)}, ErrPerm, 0},
		{"chgrp by non-owner", groupie50, file(0o666, 1000, 1000), SetAttr{GID: u32(50)}, ErrPerm, 0},
		{"truncate with write", bob, file(0o666, 1000, 1000), SetAttr{SizeBytes: u64(0)}, nil, 0},
		{"truncate without write", bob, file(0o644, 1000, 1000), SetAttr{SizeBytes: u64(0)}, ErrAccess, 0},
		{"truncate by owner of 0444", alice, file(0o444, 1000, 1000), SetAttr{SizeBytes: u64(0)}, nil, 0},
		{"truncate a dir", rootCred, dir(0o755, 0, 0), SetAttr{SizeBytes: u64(0)}, ErrIsDir, 0},
		{"explicit times by stranger with write", bob, file(0o666, 1000, 1000), SetAttr{Mtime: TimeClient}, ErrPerm, 0},
		{"server time by stranger with write", bob, file(0o666, 1000, 1000), SetAttr{Mtime: TimeServer}, nil, 0},
		{"server time by stranger without write", bob, file(0o644, 1000, 1000), SetAttr{Atime: TimeServer}, ErrAccess, 0},
		{"explicit times by owner", alice, file(0o400, 1000, 1000), SetAttr{Atime: TimeClient, Mtime: TimeClient}, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := checkSetAttr(c.cred, c.a, c.sa)
			if c.err == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if c.sa.Mode != nil && *got.Mode != c.wantMode {
					t.Fatalf("mode %o, want %o", *got.Mode, c.wantMode)
				}
				return
			}
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
		})
	}
}

func TestAccessBits(t *testing.T) {
	all := AccessRead | AccessLookup | AccessModify | AccessExtend | AccessDelete | AccessExecute
	cases := []struct {
		name string
		cred Cred
		a    backend.Attr
		want uint32
		got  uint32
	}{
		{"owner rw file", alice, file(0o644, 1000, 1000), all, AccessRead | AccessModify | AccessExtend},
		{"other r file", bob, file(0o644, 1000, 1000), all, AccessRead},
		{"exec file", bob, file(0o755, 1000, 1000), all, AccessRead | AccessExecute},
		{"dir rwx", alice, dir(0o755, 1000, 1000), all, AccessRead | AccessLookup | AccessModify | AccessExtend | AccessDelete},
		{"dir r-x", bob, dir(0o755, 1000, 1000), all, AccessRead | AccessLookup},
		{"dir -w- no delete", bob, dir(0o702, 1000, 1000), all, AccessModify | AccessExtend},
		{"only asked bits", alice, file(0o644, 1000, 1000), AccessRead, AccessRead},
		{"root non-exec file", rootCred, file(0o644, 1000, 1000), all, AccessRead | AccessModify | AccessExtend},
		{"root exec file", rootCred, file(0o100, 1000, 1000), all, AccessRead | AccessModify | AccessExtend | AccessExecute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := accessBits(c.cred, c.a, c.want); got != c.got {
				t.Fatalf("access %#x, want %#x", got, c.got)
			}
		})
	}
}
