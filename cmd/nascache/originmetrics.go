package main

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nascache/nascache/backend"
)

// originMetrics are the per-export origin metrics on the node's registry:
//
//	nascache_origin_up{export}                1 while the origin answers, 0 while it is down
//	nascache_origin_errors_total{export,class} calls to the origin that failed, by error class
type originMetrics struct {
	reg    prometheus.Registerer
	errors *prometheus.CounterVec
}

func newOriginMetrics(reg prometheus.Registerer) (*originMetrics, error) {
	m := &originMetrics{
		reg: reg,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nascache_origin_errors_total",
			Help: "Calls to an export's origin that ended in an error (after the origin client's own retries), by class.",
		}, []string{"export", "class"}),
	}
	if err := reg.Register(m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

// upReporter is an origin that knows whether it can reach its server now
// (nfs.Origin). Origins without it (a local directory) are always up.
type upReporter interface {
	Up() bool
}

// watch registers the up gauge of export's origin o.
func (m *originMetrics) watch(export string, o backend.Origin) error {
	up := func() float64 { return 1 }
	if r, ok := o.(upReporter); ok {
		up = func() float64 {
			if r.Up() {
				return 1
			}
			return 0
		}
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "nascache_origin_up",
		Help:        "1 while the export's origin is mounted and connected, 0 while it is down (calls then get NFS3ERR_JUKEBOX).",
		ConstLabels: prometheus.Labels{"export": export},
	}, up))
}

// onError returns the error observer for export's origin client.
func (m *originMetrics) onError(export string) func(op string, err error) {
	return func(_ string, err error) {
		m.errors.WithLabelValues(export, errorClass(err)).Inc()
	}
}

// errorClasses names the backend error classes, in the order they are
// tested (the first match wins).
var errorClasses = [...]struct {
	err   error
	class string
}{
	{backend.ErrUnavailable, "unavailable"},
	{backend.ErrIO, "io"},
	{backend.ErrStale, "stale"},
	{backend.ErrBadHandle, "bad_handle"},
	{backend.ErrNotExist, "not_exist"},
	{backend.ErrExist, "exist"},
	{backend.ErrAccess, "access"},
	{backend.ErrPerm, "perm"},
	{backend.ErrNotEmpty, "not_empty"},
	{backend.ErrNotDir, "not_dir"},
	{backend.ErrIsDir, "is_dir"},
	{backend.ErrNoSpace, "no_space"},
	{backend.ErrDquot, "dquot"},
	{backend.ErrReadOnly, "read_only"},
	{backend.ErrNotSupported, "not_supported"},
	{backend.ErrInvalid, "invalid"},
}

// errorClass is the metric label for an origin error: its backend class,
// or "other".
func errorClass(err error) string {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.class
		}
	}
	return "other"
}
