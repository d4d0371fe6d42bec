package cachefs

import (
	"fmt"

	"github.com/nascache/nascache/backend"
)

// Permission checks from mode bits and AUTH_SYS credentials, as knfsd and
// the Linux VFS make them. uid 0 passes every check except execute of a
// non-directory, which needs some x bit.

// Wanted permissions, as in rwx mode bits.
const (
	permRead  uint32 = 4
	permWrite uint32 = 2
	permExec  uint32 = 1
)

func inGroup(cred Cred, gid uint32) bool {
	if cred.GID == gid {
		return true
	}
	for _, g := range cred.GIDs {
		if g == gid {
			return true
		}
	}
	return false
}

// classBits returns the rwx bits of a that apply to cred (owner, group or
// other, the first class that matches, as POSIX says).
func classBits(cred Cred, a backend.Attr) uint32 {
	switch {
	case cred.UID == a.UID:
		return (a.Mode >> 6) & 7
	case inGroup(cred, a.GID):
		return (a.Mode >> 3) & 7
	}
	return a.Mode & 7
}

// allowed reports whether cred has every permission in want on a.
func allowed(cred Cred, a backend.Attr, want uint32) bool {
	if cred.UID == 0 {
		if want&permExec != 0 && a.Type != backend.TypeDirectory {
			return a.Mode&0o111 != 0
		}
		return true
	}
	return classBits(cred, a)&want == want
}

// checkPerm returns ErrAccess unless cred has want on a.
func checkPerm(cred Cred, a backend.Attr, want uint32, what string) error {
	if !allowed(cred, a, want) {
		return fmt.Errorf("%s: uid %d lacks %s on mode %04o owned by %d:%d: %w", what, cred.UID, permString(want), a.Mode, a.UID, a.GID, ErrAccess)
	}
	return nil
}

func permString(want uint32) string {
	b := []byte("---")
	if want&permRead != 0 {
		b[0] = 'r'
	}
	if want&permWrite != 0 {
		b[1] = 'w'
	}
	if want&permExec != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// checkDirWrite checks that cred may add or remove entries of dir.
func checkDirWrite(cred Cred, dir backend.Attr) error {
	if dir.Type != backend.TypeDirectory {
		return fmt.Errorf("not a directory: %w", ErrNotDir)
	}
	return checkPerm(cred, dir, permWrite|permExec, "modify directory")
}

// checkLookup checks search permission on dir.
func checkLookup(cred Cred, dir backend.Attr) error {
	if dir.Type != backend.TypeDirectory {
		return fmt.Errorf("not a directory: %w", ErrNotDir)
	}
	return checkPerm(cred, dir, permExec, "search directory")
}

// checkSticky applies the sticky-bit rule: in a sticky directory only the
// owner of the entry, the owner of the directory or root may remove or
// rename it. Linux refuses with EPERM (may_delete), not EACCES, so the
// client's rm says "Operation not permitted" as on a local file system.
func checkSticky(cred Cred, dir, victim backend.Attr) error {
	if dir.Mode&0o1000 == 0 || cred.UID == 0 || cred.UID == dir.UID || cred.UID == victim.UID {
		return nil
	}
	return fmt.Errorf("sticky directory: uid %d owns neither entry (%d) nor directory (%d): %w", cred.UID, victim.UID, dir.UID, ErrPerm)
}

// checkRead checks READ: read or execute permission suffices (a client
// executing a file reads it), and the owner may always read (knfsd's
// owner override, which lets a process keep using a file it opened
// before a chmod).
func checkRead(cred Cred, a backend.Attr) error {
	if a.Type == backend.TypeDirectory {
		return fmt.Errorf("read: %w", ErrIsDir)
	}
	if cred.UID == a.UID || allowed(cred, a, permRead) || allowed(cred, a, permExec) {
		return nil
	}
	return checkPerm(cred, a, permRead, "read")
}

// checkWrite checks WRITE and truncate: write permission, or ownership
// (knfsd's owner override, so that a file created with mode 0444 can be
// written by its creator, as open(O_CREAT, 0444) allows).
func checkWrite(cred Cred, a backend.Attr) error {
	if a.Type == backend.TypeDirectory {
		return fmt.Errorf("write: %w", ErrIsDir)
	}
	if cred.UID == a.UID {
		return nil
	}
	return checkPerm(cred, a, permWrite, "write")
}

// checkSetAttr checks whether cred may apply sa to an object with
// attributes a, and returns sa as it will be applied (a non-root chmod of
// a file whose group the caller is not in loses setgid, as Linux does).
func checkSetAttr(cred Cred, a backend.Attr, sa SetAttr) (SetAttr, error) {
	root, owner := cred.UID == 0, cred.UID == a.UID
	if sa.Mode != nil && !root {
		if !owner {
			return sa, fmt.Errorf("chmod by uid %d of object owned by %d: %w", cred.UID, a.UID, ErrPerm)
		}
		gid := a.GID
		if sa.GID != nil {
			gid = *sa.GID
		}
		if *sa.Mode&0o2000 != 0 && a.Type != backend.TypeDirectory && !inGroup(cred, gid) {
			m := *sa.Mode &^ 0o2000
			sa.Mode = &m
		}
	}
	if sa.UID != nil && *sa.UID != a.UID && !root {
		return sa, fmt.Errorf("chown by uid %d: %w", cred.UID, ErrPerm)
	}
	if sa.GID != nil && *sa.GID != a.GID && !root {
		if !owner || !inGroup(cred, *sa.GID) {
			return sa, fmt.Errorf("chgrp to %d by uid %d: %w", *sa.GID, cred.UID, ErrPerm)
		}
	}
	if sa.SizeBytes != nil {
		switch a.Type {
		case backend.TypeDirectory:
			return sa, fmt.Errorf("truncate: %w", ErrIsDir)
		case backend.TypeRegular:
		default:
			return sa, fmt.Errorf("truncate of a %s: %w", a.Type, ErrInvalid)
		}
		if err := checkWrite(cred, a); err != nil {
			return sa, err
		}
	}
	if !root && !owner {
		if sa.Atime == TimeClient || sa.Mtime == TimeClient {
			return sa, fmt.Errorf("set times by uid %d of object owned by %d: %w", cred.UID, a.UID, ErrPerm)
		}
		if sa.Atime == TimeServer || sa.Mtime == TimeServer {
			if err := checkPerm(cred, a, permWrite, "set times to now"); err != nil {
				return sa, err
			}
		}
	}
	return sa, nil
}

// accessBits returns which of want (Access* bits) cred has on a.
func accessBits(cred Cred, a backend.Attr, want uint32) uint32 {
	var got uint32
	isDir := a.Type == backend.TypeDirectory
	if allowed(cred, a, permRead) {
		got |= AccessRead
	}
	if allowed(cred, a, permWrite) {
		got |= AccessModify | AccessExtend
		if isDir && allowed(cred, a, permWrite|permExec) {
			got |= AccessDelete
		}
	}
	if allowed(cred, a, permExec) {
		if isDir {
			got |= AccessLookup
		} else {
			got |= AccessExecute
		}
	}
	return got & want
}
