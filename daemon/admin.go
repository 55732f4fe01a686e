package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealgate/sealgate/appliance/problem"
)

// Access levels of admin socket peers.
type level int

const (
	levelRead level = iota
	levelAdmin
)

type levelKey struct{}

// APIError is the admin API's one error type; writeError turns it into a
// problem response and a log line.
type APIError struct {
	Status int
	Detail string
	Err    error // logged, never sent
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

func apiErr(status int, detail string, err error) *APIError {
	return &APIError{Status: status, Detail: detail, Err: err}
}

// adminServer serves the admin API on a unix socket.
type adminServer struct {
	d        *Daemon
	log      *slog.Logger
	group    string
	srv      *http.Server
	ln       net.Listener
	selfUID  uint32
	groupGID int // -1 when the group does not exist
}

// adminHandler is a handler that may fail with an *APIError.
type adminHandler func(w http.ResponseWriter, r *http.Request) error

func (a *adminServer) handle(mux *http.ServeMux, pattern string, need level, h adminHandler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		lvl, _ := r.Context().Value(levelKey{}).(level)
		if need == levelAdmin && lvl < levelAdmin {
			a.writeError(w, r, apiErr(http.StatusForbidden, "this action needs root or membership of the admin group "+strconv.Quote(a.group), nil))
			return
		}
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

func (a *adminServer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	if !errors.As(err, &ae) {
		ae = apiErr(http.StatusInternalServerError, "internal error", err)
	}
	a.log.Warn("admin request failed", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Error())
	problem.Write(w, problem.New(ae.Status, "", ae.Detail))
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *adminServer) routes() *http.ServeMux {
	mux := http.NewServeMux()
	d := a.d
	a.handle(mux, "GET /v1/status", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, d.Status())
	})
	a.handle(mux, "GET /v1/stats", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		st, err := d.Stats()
		if err != nil {
			return apiErr(http.StatusInternalServerError, "gathering metrics", err)
		}
		return writeJSON(w, st)
	})
	metrics := promhttp.HandlerFor(d.gatherer(), promhttp.HandlerOpts{})
	a.handle(mux, "GET /metrics", levelRead, func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	})
	a.handle(mux, "POST /v1/reload", levelAdmin, func(w http.ResponseWriter, r *http.Request) error {
		err := d.Reload()
		res := map[string]any{"ok": err == nil}
		if err != nil {
			res["error"] = err.Error()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			return json.NewEncoder(w).Encode(res)
		}
		return writeJSON(w, res)
	})
	d.extraAdminRoutes(a, mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, apiErr(http.StatusNotFound, "no such admin endpoint: "+r.Method+" "+r.URL.Path, nil))
	})
	return mux
}

// listenAdmin creates the admin socket: the directory if missing, a stale
// socket removed, mode 0660, group admin_group when that group exists.
func listenAdmin(path, group string) (net.Listener, int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, -1, fmt.Errorf("admin socket directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSocket == 0 {
			return nil, -1, fmt.Errorf("admin socket %s exists and is not a socket; remove it", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, -1, fmt.Errorf("admin socket %s is in use: is another sealgate running?", path)
		}
		os.Remove(path)
	}
	old := umask(0o117)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, -1, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, -1, fmt.Errorf("admin socket mode: %w", err)
	}
	gid := -1
	if g, err := user.LookupGroup(group); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
		// Best effort: an unprivileged daemon may not own that group.
		os.Chown(path, -1, gid)
	}
	return ln, gid, nil
}

func (a *adminServer) serve() {
	a.srv = &http.Server{
		Handler: a.routes(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, levelKey{}, a.levelOf(c))
		},
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin socket stopped", "err", err)
		}
	}()
}

// levelOf decides a peer's level: uid 0, the daemon's own uid, the admin
// group as primary group or as a supplementary group of the peer's user.
func (a *adminServer) levelOf(c net.Conn) level {
	uid, gid, err := peerCred(c)
	if err != nil {
		a.log.Warn("admin peer credentials unavailable; read-only", "err", err)
		return levelRead
	}
	if uid == 0 || uid == a.selfUID {
		return levelAdmin
	}
	if a.groupGID < 0 {
		return levelRead
	}
	if int(gid) == a.groupGID {
		return levelAdmin
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		if gids, err := u.GroupIds(); err == nil && slices.Contains(gids, strconv.Itoa(a.groupGID)) {
			return levelAdmin
		}
	}
	return levelRead
}

func (a *adminServer) close(ctx context.Context) {
	if a.srv != nil {
		a.srv.Shutdown(ctx)
	}
}

// lookupGID returns the gid of group, or -1 when it does not exist.
func lookupGID(group string) int {
	if group == "" {
		return -1
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1
	}
	return gid
}
