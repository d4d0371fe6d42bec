package chunkstore

// A file system that holds less than the capacity.
//
// The accounting of store.go keeps the chunk files under the effective
// capacity capBytes, which is cfg.CapacityBytes unless the file system
// has shown that it cannot hold that much (it is shared, or smaller than
// cache_size). Then:
//
//   - At Open, if the chunks on disk plus the file system's free space
//     (statfs f_bavail) are less than the capacity, capBytes starts there.
//   - When a chunk write fails with ENOSPC or EDQUOT although the store
//     had room, capBytes drops to what the store has on disk without that
//     chunk (fitToDisk), and Put evicts (as much as the chunk needs) and
//     writes once more. A second failure fails the Put.
//   - While capBytes is below the configured capacity, each Put first
//     measures the disk (measureDisk): capBytes becomes the store's
//     chunks on disk plus the free space, up or down, so the store
//     evicts before it writes instead of running into ENOSPC, follows
//     another tenant of the disk that grows or shrinks, and is back at
//     the configured capacity once the file system has room for it.
//     statfs does not see quotas: after an EDQUOT, measureDisk only ever
//     lowers capBytes (until the next Open).
//
// capBytes never goes below what the store cannot free (pinned chunks
// and files it could not delete) nor above cfg.CapacityBytes, so the
// capacity bound of the package doc holds whatever it does. The first
// lowering is logged at warn with the numbers (and the refused write's
// error, "no space left on device"), the return to the configured
// capacity at info, the steps in between at debug.

import (
	"errors"
	"io/fs"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// diskFull reports whether err says the file system (or a quota) has no
// room for what was written.
func diskFull(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// statfsAvail is the free space of the file system under dir that an
// unprivileged writer may use (blocks reserved for root not counted).
func statfsAvail(dir string) (int64, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(dir, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "statfs", Path: dir, Err: err}
		}
		unit := st.Frsize
		if unit == 0 {
			unit = st.Bsize
		}
		return int64(st.Bavail) * unit, nil
	}
}

// onDiskLocked is what the store's files take on disk for sure: every
// charge but the reservations of chunks being written (their blocks are
// not all allocated yet) and chunks being unlinked (theirs may be free
// already). Counting neither errs towards a smaller capacity.
func (s *Store) onDiskLocked() int64 {
	return s.usedBytes - s.fillingBytes - s.removingBytes
}

// measureDisk sets the effective capacity to the store's chunks on disk
// plus the file system's free space; see the file comment.
func (s *Store) measureDisk() {
	avail, err := s.statfs(s.dir)
	if err != nil {
		s.log.Debug().Err(err).Msg("cannot measure the chunk file system; effective capacity unchanged")
		return
	}
	s.mu.Lock()
	target := s.onDiskLocked() + avail
	if s.quotaLimited {
		target = min(target, s.capBytes)
	}
	ch := s.setCapacityLocked(target)
	s.mu.Unlock()
	ch.log(s.log, nil, avail)
}

// fitToDisk lowers the effective capacity to what the store has on disk
// after the file system refused a write (cause) for want of space.
func (s *Store) fitToDisk(cause error) {
	s.mu.Lock()
	if errors.Is(cause, unix.EDQUOT) {
		s.quotaLimited = true
	}
	ch := s.setCapacityLocked(min(s.capBytes, s.onDiskLocked()))
	s.mu.Unlock()
	ch.log(s.log, cause, -1)
}

// capacityChange is a change of the effective capacity, logged once the
// lock is released.
type capacityChange struct {
	from, to, configured, used, pinned int64
	warn                               bool // the first lowering since the store was last at its configured capacity
}

// setCapacityLocked sets the effective capacity to target, clamped to
// [what cannot be freed, configured capacity].
func (s *Store) setCapacityLocked(target int64) capacityChange {
	c := min(max(target, s.pin.bytes+s.stuckBytes), s.cfg.CapacityBytes)
	ch := capacityChange{from: s.capBytes, to: c, configured: s.cfg.CapacityBytes, used: s.usedBytes, pinned: s.pin.bytes}
	s.capBytes = c
	s.adapting.Store(c < s.cfg.CapacityBytes)
	switch {
	case c < ch.from && !s.lowWarned:
		s.lowWarned = true
		ch.warn = true
	case c == s.cfg.CapacityBytes:
		s.lowWarned = false
	}
	return ch
}

// log reports the change; cause is the refused write, if any, and
// availBytes the free space measured (-1: not measured).
func (ch capacityChange) log(l zerolog.Logger, cause error, availBytes int64) {
	var ev *zerolog.Event
	msg := "effective capacity of the chunk store changed"
	switch {
	case ch.to == ch.from:
		return
	case ch.warn:
		ev = l.Warn()
		msg = "the file system holds less than the chunk store's capacity: lowering its effective capacity, evicting before writing from now on"
	case ch.to == ch.configured:
		ev = l.Info()
		msg = "the file system has room for the chunk store's capacity again"
	default:
		ev = l.Debug()
	}
	ev = ev.Int64("capacity_bytes", ch.configured).Int64("effective_from", ch.from).
		Int64("effective_to", ch.to).Int64("used_bytes", ch.used).Int64("pinned_bytes", ch.pinned)
	if availBytes >= 0 {
		ev = ev.Int64("fs_avail_bytes", availBytes)
	}
	if cause != nil {
		ev = ev.Err(cause)
	}
	ev.Msg(msg)
}
