package meta

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// SetPinned records (pinned true) or clears the pin of inode ino. Both
// are idempotent. A pin of an inode that Forget removes goes with it.
func (db *DB) SetPinned(ino uint64, pinned bool) error {
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPins)
		if !pinned {
			return b.Delete(inoKey(ino))
		}
		if _, err := getInode(tx, ino); err != nil {
			return err
		}
		return b.Put(inoKey(ino), seal(kindPin, nil))
	})
	if err != nil {
		return fmt.Errorf("set pin of inode %d to %v: %w", ino, pinned, err)
	}
	return nil
}

// Pinned returns the pinned inodes in ascending order.
func (db *DB) Pinned() ([]uint64, error) {
	var out []uint64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPins).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("pin key of %d bytes: %w", len(k), ErrCorrupt)
			}
			if _, err := open(kindPin, v); err != nil {
				return fmt.Errorf("pin of inode %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, binary.BigEndian.Uint64(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	return out, nil
}
