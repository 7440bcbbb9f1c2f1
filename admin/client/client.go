//go:build linux

package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stickylb/stickylb/admin"
)

// Client speaks to one running stickylb's admin API.
type Client struct {
	base string
	// socket is the admin socket the client speaks over ("": base, over
	// TCP).
	socket string
	// token and tokenFile: the admin token and the file it came from.
	token, tokenFile string
	http             *http.Client
	// authHTTP, if set, carries the calls that send the token: over
	// plain HTTP to loopback, it checks who serves first (target.go).
	authHTTP *http.Client
}

// Where says where the client speaks: the admin socket's path, or the
// API's base address.
func (c *Client) Where() string { return cmp.Or(c.socket, c.base) }

// ErrToken is the answer of an API that wants a token the client has
// not got (HTTP 401).
var ErrToken = errors.New("the admin API wants its token: pass --token-file FILE (the file admin.token_file names)")

// APIError is the API's refusal of a call: its status and its message.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Raw does one request and returns the answer's body as it came. A body
// that is not nil is sent as JSON.
func (c *Client) Raw(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	hc := c.http
	if c.token != "" && path != "/readyz" && path != "/healthz" { // health checks never need it
		req.Header.Set("Authorization", "Bearer "+c.token)
		hc = cmp.Or(c.authHTTP, c.http)
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(admin.RequestHeader, "1")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer to %s %s: %w", method, path, err)
	}
	return raw, refusal(resp.StatusCode, raw)
}

func (c *Client) unreachable(err error) error {
	if c.socket != "" {
		return fmt.Errorf("cannot reach the admin API at the socket %s (is stickylb running, and is admin.socket this path?): %w", c.socket, err)
	}
	return fmt.Errorf("cannot reach the admin API at %s (is stickylb running, and is admin.listen this address?): %w", c.base, err)
}

// refusal is the error an answer's status says, or nil.
func refusal(status int, raw []byte) error {
	switch {
	case status == http.StatusUnauthorized:
		return ErrToken
	case status < 300:
		return nil
	}
	var e struct{ Error string }
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return &APIError{Status: status, Message: e.Error}
	}
	return &APIError{Status: status, Message: strings.TrimSpace(string(raw))}
}

// call does one request and decodes its answer into out, unless out is
// nil.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	raw, err := c.Raw(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the admin API's answer to %s %s: %w", method, path, err)
	}
	return nil
}
