package main

import "errors"

var (
	// errOtherDataset: the data directory holds a data set of another
	// scale or seed; use another --data directory.
	errOtherDataset = errors.New("bench: directory holds a different data set")
	// errShortRead: a reader got fewer files or bytes than the data set has.
	errShortRead = errors.New("bench: read less than the data set holds")
	// errBadContent: bytes read back differ from the generated data.
	errBadContent = errors.New("bench: content differs from the generated data")
	// errUsage: bad command line.
	errUsage = errors.New("bench: usage")
)
