//go:build integration && race

package integration

// raceBuild: the tests run with -race, so nascache is built with -race too
// and a data race in the server fails the test that saw it.
const raceBuild = true
