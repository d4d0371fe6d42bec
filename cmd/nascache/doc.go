// Command nascache is the one nascache binary: an NFSv3 caching tier that
// sits between GPU hosts and the storage they already have.
//
// Subcommands:
//
//	nascache serve --config FILE         run a node from a YAML config
//	nascache check-config --config FILE  validate a config and exit
//	nascache demo [--dir DIR] [--listen ADDR] [--self-check]
//	nascache version
//
// This package is the only one that reads flags, environment variables and
// config files. It validates the whole config before anything starts
// (reporting every problem at once, each with the key at fault), builds the
// object graph in one wiring function (buildNode in wire.go), tells systemd
// when the NFS listener is bound (sd_notify, implemented in sdnotify.go), and
// serves /healthz and /metrics on the admin address.
//
// Lifetimes: main owns one context cancelled by SIGTERM/SIGINT; every
// goroutine started here belongs to an errgroup that is waited for before
// the process exits.
package main
