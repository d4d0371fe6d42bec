package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// defaultAdminURL is where the CLI finds a node when neither --admin nor
// --config says otherwise: the default admin_listen.
const defaultAdminURL = "http://" + defaultAdminListen

// adminCallTimeout bounds one admin API call.
const adminCallTimeout = 30 * time.Second

// maxAdminReplyBytes bounds what the CLI reads of one reply.
const maxAdminReplyBytes = 16 << 20

// adminFlags are the flags every admin API subcommand takes.
type adminFlags struct {
	url, config *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		url:    fs.String("admin", "", "admin `URL` of the node (default: admin_listen of --config, else "+defaultAdminURL+")"),
		config: fs.String("config", "", "config `file` to take admin_listen from"),
	}
}

// client returns an API client for the node the flags name.
func (f adminFlags) client(e env) (*adminClient, error) {
	base, err := adminBaseURL(*f.url, *f.config)
	if err != nil {
		return nil, err
	}
	hc := e.httpClient
	if hc == nil {
		hc = &http.Client{Timeout: adminCallTimeout}
	}
	return &adminClient{base: base, hc: hc}, nil
}

// adminBaseURL picks the node's admin URL: --admin as given (the scheme
// may be left out), else admin_listen of the config file, else the
// default.
func adminBaseURL(flagURL, configFile string) (string, error) {
	if flagURL != "" {
		raw := flagURL
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%w: --admin %q is not an http URL like %s", errUsage, flagURL, defaultAdminURL)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	if configFile == "" {
		return defaultAdminURL, nil
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return "", fmt.Errorf("read config %s: %w", configFile, err)
	}
	// Only admin_listen matters here: decode strictly, but do not check
	// the origins, which may live on another host.
	cfg, err := decodeConfig(data)
	if err != nil {
		return "", fmt.Errorf("config %s: %w", configFile, err)
	}
	if cfg.AdminListen == "" {
		return "", fmt.Errorf("config %s: admin_listen is empty (the admin API is off)", configFile)
	}
	ap, unspecified, err := parseListenAddr(cfg.AdminListen)
	if err != nil {
		return "", fmt.Errorf("config %s: admin_listen: %w", configFile, err)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("config %s: admin_listen %s has port 0, chosen at start: pass --admin", configFile, cfg.AdminListen)
	}
	if unspecified {
		// Bound to every address: loopback reaches it.
		ap = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
	}
	return "http://" + ap.String(), nil
}

// adminClient calls a node's /v1 API.
type adminClient struct {
	base string
	hc   *http.Client
}

// adminHTTPError is a non-2xx reply.
type adminHTTPError struct {
	Method, Path string
	Code         int
	Msg          string
}

func (e *adminHTTPError) Error() string {
	return fmt.Sprintf("%s %s: %s (HTTP %d)", e.Method, e.Path, e.Msg, e.Code)
}

// call sends in (when not nil) as JSON and decodes a 2xx reply into out
// (when not nil). It returns the raw reply body.
func (c *adminClient) call(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("admin API at %s: %w (is nascache serving, with admin_listen there?)", c.base, err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae apiError
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &ae) == nil && ae.Error != "" {
			msg = ae.Error
		}
		return raw, &adminHTTPError{Method: method, Path: path, Code: resp.StatusCode, Msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: decode reply: %w", method, path, err)
		}
	}
	return raw, nil
}
