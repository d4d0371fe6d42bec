package main

import "errors"

// errUsage marks a bad command line (exit status 2). Config problems are a
// *ConfigError (exit status 3).
var errUsage = errors.New("nascache: bad usage")
