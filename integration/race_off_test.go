//go:build integration && !race

package integration

// raceBuild: the tests run without -race, and so does nascache.
const raceBuild = false
