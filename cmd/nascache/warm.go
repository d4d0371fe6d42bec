package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"
)

// How `nascache warm` follows a job: on a terminal it redraws the bar at
// every poll; otherwise it prints a line every plainEvery polls (and the
// last one).
const (
	ttyPollInterval   = 500 * time.Millisecond
	plainPollInterval = time.Second
	plainEvery        = 5
	// cancelTimeout bounds the DELETE that Ctrl-C sends.
	cancelTimeout = 10 * time.Second
)

// cmdWarm starts a warm job on a running node and follows it until it
// ends. Ctrl-C cancels the job (a second Ctrl-C quits without waiting).
func cmdWarm(ctx context.Context, args []string, e env) error {
	fs := newFlags("warm", e)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: nascache warm [--admin URL | --config FILE] [--pin] [--parallelism N] /EXPORT/path...\n")
		fs.PrintDefaults()
	}
	admin := addAdminFlags(fs)
	pin := fs.Bool("pin", false, "pin what is warmed, so that it is never evicted")
	par := fs.Int("parallelism", 0, "files warmed at once (0: the node's default)")
	paths, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w: name at least one /EXPORT/path to warm", errUsage)
	}
	c, err := admin.client(e)
	if err != nil {
		return err
	}
	var st warmStarted
	if _, err := c.call(ctx, http.MethodPost, "/v1/warm", warmRequest{Paths: paths, Pin: *pin, Parallelism: *par}, &st); err != nil {
		return err
	}
	r := &progressRenderer{w: e.stdout, tty: isTerminal(e.stdout), cols: termCols(e.stdout)}
	interval, every := plainPollInterval, plainEvery
	if r.tty {
		interval, every = ttyPollInterval, 1
		fmt.Fprintf(e.stdout, "warm job %s (Ctrl-C cancels it)\n", st.ID)
	}
	v, err := followWarm(ctx, c, st.ID, r, interval, every)
	if err != nil {
		r.abort()
		return err
	}
	switch {
	case v.State == jobFailed:
		return fmt.Errorf("%w: job %s failed: %s", errWarmIncomplete, v.ID, v.Error)
	case v.State == jobCancelled:
		return fmt.Errorf("%w: job %s was cancelled", errWarmIncomplete, v.ID)
	case v.Errors > 0:
		return fmt.Errorf("%w: job %s could not warm %d file(s); the node's log names them", errWarmIncomplete, v.ID, v.Errors)
	}
	return nil
}

// followWarm polls job id every interval and shows every every-th poll
// until the job ends, which it then shows and returns. When ctx ends it
// cancels the job and goes on following it until the node reports it
// stopped.
func followWarm(ctx context.Context, c *adminClient, id string, r *progressRenderer, interval time.Duration, every int) (warmJobView, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	poll, cancelled := ctx, false
	for i := 0; ; i++ {
		var v warmJobView
		_, err := c.call(poll, http.MethodGet, "/v1/warm/"+id, nil, &v)
		switch {
		case err != nil && !cancelled && ctx.Err() != nil:
			// Interrupted during the call: cancel the job below.
		case err != nil:
			return v, err
		case v.State != jobRunning:
			r.finish(v)
			return v, nil
		case i%every == 0:
			r.update(v)
		}
		if cancelled {
			<-t.C
			continue
		}
		if ctx.Err() == nil {
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
			}
		}
		// Interrupted: cancel the job once, then follow it to its end
		// with a context that no longer ends.
		cancelled, poll = true, context.WithoutCancel(ctx)
		r.note(fmt.Sprintf("cancelling warm job %s (interrupt again to quit without waiting)", id))
		if err := cancelJob(poll, c, id); err != nil {
			return v, err
		}
	}
}

// cancelJob asks the node to cancel job id.
func cancelJob(ctx context.Context, c *adminClient, id string) error {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	_, err := c.call(ctx, http.MethodDelete, "/v1/warm/"+id, nil, nil)
	return err
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments (paths start with /, never with -), and returns
// the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
