package cachefs

// WaitIdle waits until read-ahead and every chunk fetch, including the
// store of what it fetched, have finished. Tests call it between steps
// whose figures must be exact; nothing may read concurrently.
func (fs *FS) WaitIdle() {
	if fs.data != nil {
		fs.data.wg.Wait()
		fs.data.flights.Wait()
	}
}
