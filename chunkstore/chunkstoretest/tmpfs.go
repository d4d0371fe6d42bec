// Package chunkstoretest mounts small tmpfs file systems for tests of the
// chunk store and of what runs on it: a file system that really runs out
// of space (ENOSPC while a chunk is written), and one whose block usage
// can be read at one instant.
//
// Why tmpfs: statfs on a tmpfs mounted with a size reports the pages that
// regular files hold (directories take none), counted when a page is
// allocated and uncounted when it is freed, and the size is enforced at
// every allocation. A file unlinked while still open keeps its pages,
// and so stays in the count, until its last close: exactly the disk use
// that a chunk store must keep under its capacity. One statfs is one
// reading of that counter, not a walk over files that change under it.
package chunkstoretest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Tmpfs is a tmpfs mounted for the length of one test.
type Tmpfs struct {
	// Dir is the mount point.
	Dir string
}

// PageBytes is the allocation unit of tmpfs (the page size).
func PageBytes() int64 { return int64(os.Getpagesize()) }

// MountTmpfs mounts a tmpfs of sizeBytes (rounded up to whole pages) on
// dir, creating dir if needed, and unmounts it in t.Cleanup (so it must
// be called before whatever keeps files open in it registers its own
// cleanup). Mounting needs root: without it the test is skipped with a
// loud message.
func MountTmpfs(t testing.TB, dir string, sizeBytes int64) *Tmpfs {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPED: %s needs root to mount a tmpfs; run it as root to cover this case", t.Name())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("tmpfs mount point: %v", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, sizeOption(sizeBytes)); err != nil {
		t.Fatalf("mount tmpfs of %d bytes on %s: %v", sizeBytes, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			// Still busy (a process the test started has not exited):
			// detach it; the kernel frees it at the last close.
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount tmpfs %s: %v", dir, err)
			}
		}
	})
	return &Tmpfs{Dir: dir}
}

// Resize changes the size of the mounted tmpfs. A size below what is in
// use fails with EINVAL.
func (m *Tmpfs) Resize(sizeBytes int64) error {
	if err := unix.Mount("tmpfs", m.Dir, "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, sizeOption(sizeBytes)); err != nil {
		return fmt.Errorf("resize tmpfs %s to %d bytes: %w", m.Dir, sizeBytes, err)
	}
	return nil
}

// UsedBytes is what the files in the tmpfs hold at this instant, unlinked
// but open files and partly written ones included.
func (m *Tmpfs) UsedBytes() (int64, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(m.Dir, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("statfs %s: %w", m.Dir, err)
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize, nil
	}
}

func sizeOption(sizeBytes int64) string {
	page := PageBytes()
	return fmt.Sprintf("size=%d,mode=0700", (sizeBytes+page-1)/page*page)
}
