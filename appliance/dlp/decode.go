package dlp

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"

	"github.com/andybalholm/brotli"
)

// decodable reports whether enc (a Content-Encoding value) is one this
// package decompresses: gzip (x-gzip), br and deflate, a single coding.
func decodable(enc string) bool {
	switch enc {
	case "gzip", "x-gzip", "br", "deflate":
		return true
	}
	return false
}

// contentEncoding returns the normalized Content-Encoding, "" for none.
func contentEncoding(v []string) string {
	e := strings.ToLower(strings.TrimSpace(strings.Join(v, ",")))
	if e == "identity" {
		return ""
	}
	return e
}

var errDecoderStopped = errors.New("dlp: decoder stopped")

// decoder turns pushed compressed bytes into scanned plaintext. The standard
// decompressors pull from an io.Reader; iter.Pull runs one as a coroutine
// that is resumed by each write and yields when it needs more input, so the
// whole thing runs on the handler's goroutine, one step at a time.
type decoder struct {
	enc      string
	sc       *scanner
	in       []byte
	eof      bool
	next     func() (struct{}, bool)
	stop     func()
	err      error
	finished bool
}

func newDecoder(enc string, sc *scanner) *decoder {
	d := &decoder{enc: enc, sc: sc}
	d.next, d.stop = iter.Pull(d.run)
	return d
}

// Read implements io.Reader for the decompressor, inside the coroutine.
type pushReader struct {
	d     *decoder
	yield func(struct{}) bool
}

func (r *pushReader) Read(p []byte) (int, error) {
	d := r.d
	for len(d.in) == 0 {
		if d.eof {
			return 0, io.EOF
		}
		if !r.yield(struct{}{}) {
			return 0, errDecoderStopped
		}
	}
	n := copy(p, d.in)
	d.in = d.in[n:]
	return n, nil
}

func (d *decoder) run(yield func(struct{}) bool) {
	pr := &pushReader{d: d, yield: yield}
	var rd io.Reader
	switch d.enc {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(pr)
		if err == io.EOF {
			return // an empty body
		}
		if err != nil {
			d.err = fmt.Errorf("reading gzip header: %w", err)
			return
		}
		rd = zr
	case "br":
		rd = brotli.NewReader(pr)
	case "deflate":
		// HTTP deflate is zlib (RFC 1950), but some servers send raw
		// deflate (RFC 1951): tell them apart by the zlib header.
		br := bufio.NewReaderSize(pr, 64)
		hdr, err := br.Peek(2)
		if err == io.EOF && len(hdr) == 0 {
			return // an empty body
		}
		if err != nil {
			d.err = fmt.Errorf("reading deflate header: %w", err)
			return
		}
		if hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				d.err = fmt.Errorf("reading zlib header: %w", err)
				return
			}
			rd = zr
		} else {
			rd = flate.NewReader(br)
		}
	default:
		d.err = fmt.Errorf("content encoding %q not supported", d.enc)
		return
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			if werr := d.sc.write(buf[:n]); werr != nil {
				d.err = werr
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			d.err = fmt.Errorf("decoding %s body: %w", d.enc, err)
			return
		}
	}
}

// write decompresses and scans p.
func (d *decoder) write(p []byte) error {
	if d.finished {
		// Bytes after the end of the compressed stream are never
		// forwarded (only decoded output is), so they cannot leak.
		return d.err
	}
	d.in = p
	if _, ok := d.next(); !ok {
		d.finished = true
	}
	d.in = nil
	return d.err
}

// close ends the compressed stream and the scan.
func (d *decoder) close() error {
	if !d.finished {
		d.eof = true
		d.next()
		d.finished = true
	}
	d.stop()
	if d.err != nil {
		return d.err
	}
	return d.sc.close()
}
