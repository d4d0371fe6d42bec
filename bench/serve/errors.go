package main

import "errors"

var (
	// errUsage: bad command line.
	errUsage = errors.New("serve: usage")
	// errNoHandles: the listed directory gave nothing to GETATTR or LOOKUP.
	errNoHandles = errors.New("serve: directory lists no entries")
	// errShortRead: a sequential read ended before the file's size.
	errShortRead = errors.New("serve: read less than the file holds")
)
