package main

import "errors"

// errUsage marks a bad command line (exit status 2). Config problems are a
// *ConfigError (exit status 3).
var errUsage = errors.New("nascache: bad usage")

// Admin API errors. The handlers map them to HTTP statuses in one place
// (apiStatus in adminapi.go).
var (
	// errBadRequest marks a request the API cannot act on (400).
	errBadRequest = errors.New("nascache: bad request")
	// errTooManyJobs: the warm job table is full of running jobs (429).
	errTooManyJobs = errors.New("nascache: too many warm jobs")
	// errAdminClosed: the node is stopping (503).
	errAdminClosed = errors.New("nascache: admin API is shutting down")
	// errNoWarmer: this node has no data cache to warm (501).
	errNoWarmer = errors.New("nascache: this node cannot warm")
	// errJobIDClash: a fresh random job id is already in use (500).
	errJobIDClash = errors.New("nascache: warm job id in use")
)

// errWarmIncomplete marks a `nascache warm` whose job failed, was
// cancelled or could not warm every file (exit status 1).
var errWarmIncomplete = errors.New("nascache: warm incomplete")
