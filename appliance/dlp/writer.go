package dlp

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
	"github.com/sealgate/sealgate/appliance/problem"
	"github.com/sealgate/sealgate/appliance/reqctx"
)

// ErrWriteAfterFinish is returned by writes that reach a wrapped
// ResponseWriter after the wrapped handler returned.
var ErrWriteAfterFinish = errors.New("dlp: write after the handler returned")

// errWithheld stops the scan once the response has been replaced.
var errWithheld = errors.New("dlp: response withheld")

// WithheldDetail is the problem detail of a response replaced by the block
// action. It says nothing about what was found.
const WithheldDetail = "response withheld: sensitive data"

// RefusedDetail is the problem detail of a compressed response that is
// refused because it cannot be scanned.
const RefusedDetail = "response withheld: its content encoding cannot be inspected"

// maxLoggedFindings bounds the per-finding log lines of one response; the
// rest are summed up in one line at the end.
const maxLoggedFindings = 16

type writerMode uint8

const (
	modePending  writerMode = iota // no status yet
	modePass                       // not scanned: straight through
	modeScan                       // scanned
	modeWithheld                   // replaced by a problem; the body is swallowed
	modeFinished                   // the handler returned
)

// respWriter is the ResponseWriter handed to the wrapped handler.
type respWriter struct {
	p        *Policy
	rw       http.ResponseWriter
	req      *http.Request
	info     *reqctx.Info
	snapshot http.Header // the engine's headers before the upstream's

	mode      writerMode
	status    int
	committed bool // status line sent to rw
	buffering bool // holding the body for a possible block
	bbuf      []byte
	sc        *scanner
	dec       *decoder
	counts    [numKinds]int
	logged    int
	alerted   bool
	encoded   bool // the upstream body was compressed
}

func (p *Policy) newWriter(w http.ResponseWriter, r *http.Request) *respWriter {
	// The engine's headers, so a withheld response keeps them and loses
	// the upstream's.
	return &respWriter{p: p, rw: w, req: r, info: reqctx.From(r.Context()), snapshot: w.Header().Clone()}
}

// Header implements http.ResponseWriter.
func (w *respWriter) Header() http.Header { return w.rw.Header() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.rw }

// Hijack passes a protocol switch through untouched.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.mode = modePass
		w.committed = true
	}
	return c, brw, err
}

// WriteHeader implements http.ResponseWriter: it decides whether and how the
// body is scanned. The status line itself is sent when the first scanned
// byte leaves, so a response can still be replaced until then.
func (w *respWriter) WriteHeader(code int) {
	if w.mode != modePending {
		return
	}
	if code < 200 {
		// 1xx, including 101 Switching Protocols, pass as they are; after
		// a 101 the connection is no longer HTTP.
		w.rw.WriteHeader(code)
		if code == http.StatusSwitchingProtocols {
			w.mode, w.committed = modePass, true
		}
		return
	}
	w.status = code
	h := w.rw.Header()
	if w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified {
		w.pass()
		return
	}
	scan, isJSON := w.p.cc.scanType(h.Get("Content-Type"))
	if !scan {
		w.pass()
		return
	}
	sc := w.p.scanners.Get().(*scanner)
	sc.reset(w.p.cc, isJSON, w, w)
	w.sc = sc
	if enc := contentEncoding(h.Values("Content-Encoding")); enc != "" {
		if !w.p.cc.decode || !decodable(enc) {
			reason := "compressed = refuse"
			if w.p.cc.decode {
				reason = "encoding not supported"
			}
			w.p.log.Warn("dlp refused an encoded response", "request_id", w.requestID(), "content_encoding", enc, "reason", reason)
			w.withhold(RefusedDetail)
			return
		}
		w.dec = newDecoder(enc, sc)
		w.encoded = true
		h.Del("Content-Encoding")
		h.Del("Content-Length")
	}
	if w.p.cc.anyRedact || w.encoded {
		// The bytes may differ from the upstream's: digests no longer
		// hold, and the entity tag can only be weak.
		h.Del("Content-MD5")
		h.Del("Digest")
		h.Del("Content-Digest")
		h.Del("Repr-Digest")
		if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
			h.Set("Etag", "W/"+et)
		}
	}
	w.buffering = w.p.cc.anyBlock
	w.mode = modeScan
}

func (w *respWriter) pass() {
	w.mode = modePass
	w.committed = true
	w.rw.WriteHeader(w.status)
}

// Write implements http.ResponseWriter.
func (w *respWriter) Write(p []byte) (int, error) {
	if w.mode == modePending {
		w.WriteHeader(http.StatusOK)
	}
	switch w.mode {
	case modePass:
		return w.rw.Write(p)
	case modeWithheld:
		// The upstream body is read to its end and dropped, so the client
		// gets a clean 502 and the upstream connection can be reused.
		return len(p), nil
	case modeFinished:
		return 0, ErrWriteAfterFinish
	}
	var err error
	if w.dec != nil {
		err = w.dec.write(p)
	} else {
		err = w.sc.write(p)
	}
	if err != nil {
		if w.failed(err) {
			return len(p), nil
		}
		return 0, err
	}
	return len(p), nil
}

// failed handles an error of the scan path and reports whether the write
// should look successful to the handler (the response was replaced).
func (w *respWriter) failed(err error) bool {
	if errors.Is(err, errWithheld) {
		return true
	}
	var ce *clientError
	if errors.As(err, &ce) {
		return false // the client went away; the handler sees its error
	}
	// The body could not be decoded (or scanned): fail closed.
	w.p.log.Warn("dlp could not scan the response body", "request_id", w.requestID(), "err", err)
	if !w.committed {
		w.withhold(RefusedDetail)
		return true
	}
	panic(http.ErrAbortHandler)
}

// clientError wraps an error writing to the client.
type clientError struct{ err error }

func (e *clientError) Error() string { return "writing response: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// Flush implements http.Flusher. Held bytes (the undecided tail) stay held;
// while buffering for a possible block nothing can be sent.
func (w *respWriter) Flush() {
	if w.mode == modePending {
		w.WriteHeader(http.StatusOK)
	}
	switch w.mode {
	case modePass:
	case modeScan:
		if w.buffering {
			return
		}
		w.commit()
	default:
		return
	}
	_ = http.NewResponseController(w.rw).Flush()
}

func (w *respWriter) commit() {
	if !w.committed {
		w.committed = true
		w.rw.WriteHeader(w.status)
	}
}

// emit implements sink: scanned bytes on their way to the client.
func (w *respWriter) emit(p []byte) error {
	if w.buffering {
		if len(w.bbuf)+len(p) <= w.p.cc.maxBlock {
			if w.bbuf == nil {
				w.bbuf = w.p.getBlockBuf()
			}
			w.bbuf = append(w.bbuf, p...)
			return nil
		}
		// Past max_block_buffer: from here a block can only abort.
		w.buffering = false
		w.commit()
		if len(w.bbuf) > 0 {
			_, err := w.rw.Write(w.bbuf)
			w.p.putBlockBuf(w.bbuf)
			w.bbuf = nil
			if err != nil {
				return &clientError{err}
			}
		}
	}
	w.commit()
	if _, err := w.rw.Write(p); err != nil {
		return &clientError{err}
	}
	return nil
}

// found implements reporter.
func (w *respWriter) found(k Kind, sec secretType, off int64) error {
	w.counts[k]++
	if c := w.p.counters[k]; c != nil {
		c.Inc()
	}
	act := w.p.cc.action[k]
	if w.logged < maxLoggedFindings && w.p.log.Enabled(w.req.Context(), slog.LevelInfo) {
		w.logged++
		attrs := []any{"request_id", w.requestID(), "kind", k.String(), "offset", off, "action", act.String()}
		if sec != secNone {
			attrs = append(attrs, "type", sec.String())
		}
		w.p.log.Info("dlp finding", attrs...)
	}
	if act != ActionBlock {
		return nil
	}
	w.raise(k, sec, off)
	if !w.committed {
		w.withhold(WithheldDetail)
		return errWithheld
	}
	// Part of the body is already with the client: cut the connection
	// before the finding leaves.
	w.p.log.Warn("dlp aborted a response past max_block_buffer", "request_id", w.requestID(), "kind", k.String(), "offset", off)
	panic(http.ErrAbortHandler)
}

func (w *respWriter) raise(k Kind, sec secretType, off int64) {
	if w.alerted {
		return
	}
	w.alerted = true
	a := alert.Alert{Time: time.Now(), Kind: "dlp_block", Route: w.p.route,
		Detail: "kind " + k.String() + " at offset " + strconv.FormatInt(off, 10)}
	if sec != secNone {
		a.Detail += " (" + sec.String() + ")"
	}
	if w.info != nil {
		a.Client = w.info.Client
		if id := w.info.Identity(); id != nil {
			a.Identity = id.Subject
			if a.Identity == "" {
				a.Identity = id.KeyName
			}
		}
	}
	w.p.alerts.Raise(a)
}

// withhold replaces the response with a 502 problem. Only possible while
// nothing has been sent.
func (w *respWriter) withhold(detail string) {
	w.mode = modeWithheld
	w.buffering = false
	w.p.putBlockBuf(w.bbuf)
	w.bbuf = nil
	h := w.rw.Header()
	clear(h)
	for k, v := range w.snapshot {
		h[k] = v
	}
	if detail == RefusedDetail && w.p.refused != nil {
		w.p.refused.Inc()
	}
	pr := problem.New(http.StatusBadGateway, "", detail)
	pr.RequestID = w.requestID()
	w.committed = true
	problem.Write(w.rw, pr)
}

// finish runs after the handler returned: the body is complete.
func (w *respWriter) finish() {
	switch w.mode {
	case modeScan:
		var err error
		if w.dec != nil {
			err = w.dec.close()
		} else {
			err = w.sc.close()
		}
		if err != nil && !w.failed(err) {
			break // the client is gone
		}
		if w.mode != modeScan {
			break
		}
		if w.buffering {
			// The whole body fit: send it with its exact length.
			w.buffering = false
			w.rw.Header().Set("Content-Length", strconv.Itoa(len(w.bbuf)))
			w.commit()
			if len(w.bbuf) > 0 {
				w.rw.Write(w.bbuf)
			}
			w.p.putBlockBuf(w.bbuf)
			w.bbuf = nil
		}
		w.commit()
	}
	w.mode = modeFinished
}

// cleanup records the counts and returns the scanner to its pool, also when
// the handler panicked.
func (w *respWriter) cleanup() {
	total := 0
	for k, n := range w.counts {
		if n > 0 {
			total += n
			if w.info != nil {
				w.info.AddDLP(Kind(k).String(), n)
			}
		}
	}
	if total > w.logged && w.p.log.Enabled(w.req.Context(), slog.LevelInfo) {
		attrs := []any{"request_id", w.requestID(), "findings", total}
		for k, n := range w.counts {
			if n > 0 {
				attrs = append(attrs, Kind(k).String(), n)
			}
		}
		w.p.log.Info("dlp findings in response", attrs...)
	}
	if w.bbuf != nil {
		w.p.putBlockBuf(w.bbuf)
		w.bbuf = nil
	}
	if w.dec != nil {
		w.dec.stop()
		w.dec = nil
	}
	if w.sc != nil {
		sc := w.sc
		w.sc = nil
		sc.out, sc.rep = nil, nil
		if cap(sc.dets) <= 1024 && cap(sc.fields) <= 1024 {
			w.p.scanners.Put(sc)
		}
	}
	w.mode = modeFinished
}

func (w *respWriter) requestID() string {
	if w.info != nil {
		return w.info.ID
	}
	return ""
}
