package cachefs

// FlushFresh writes every queued attribute, lookup and listing to meta
// and returns when meta has them.
func (fs *FS) FlushFresh() {
	if fs.persist != nil {
		fs.persist.flush(false)
	}
}
