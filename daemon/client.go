package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// DefaultSocket is where the CLI looks for the admin socket last.
const DefaultSocket = "/run/sealgate/admin.sock"

// Client talks to a running daemon over its admin socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Socket: path, hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}}
}

// ResolveSocket picks the admin socket: the flag, then $SEALGATE_SOCKET, then
// the default.
func ResolveSocket(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("SEALGATE_SOCKET"); env != "" {
		return env
	}
	return DefaultSocket
}

// Do sends a request and decodes a JSON answer into out (when not nil). A
// problem answer becomes an error carrying its detail.
func (c *Client) Do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://sealgate"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.Socket, err)
	}
	if resp.StatusCode >= 300 {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(data, &p) == nil && (p.Detail != "" || p.Error != "") {
			if p.Error != "" {
				return errors.New(p.Error)
			}
			return fmt.Errorf("%s (%d)", p.Detail, resp.StatusCode)
		}
		return fmt.Errorf("admin socket answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer from %s: %w", c.Socket, err)
	}
	return nil
}

func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("no sealgate admin socket at %s (is the daemon running? pass --socket or set $SEALGATE_SOCKET)", c.Socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("sealgate admin socket %s refuses connections (stale socket: is the daemon running?)", c.Socket)
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("permission denied on %s (run as root or as a member of the sealgate group)", c.Socket)
	}
	return fmt.Errorf("admin socket %s: %w", c.Socket, err)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
