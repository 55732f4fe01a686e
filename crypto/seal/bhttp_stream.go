package seal

import (
	"errors"
	"io"
)

// ContentWriter writes the content of an indeterminate-length Binary HTTP
// message chunk by chunk, then its trailer. It never buffers the content.
type ContentWriter struct {
	w      io.Writer
	hdr    [8]byte
	closed bool
}

// WriteRequestHead writes the framing indicator, control data and header
// section of an indeterminate-length request (req.Content, Trailer and
// Framing are ignored) and returns the writer for its content.
func WriteRequestHead(w io.Writer, req *Request) (*ContentWriter, error) {
	head := Request{Method: req.Method, Scheme: req.Scheme, Authority: req.Authority, Path: req.Path, Header: req.Header,
		Framing: Framing{Indeterminate: true, Truncated: 2}}
	b, err := head.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	return &ContentWriter{w: w}, nil
}

// WriteResponseHead writes the framing indicator, informational responses,
// status and header section of an indeterminate-length response and returns
// the writer for its content.
func WriteResponseHead(w io.Writer, resp *Response) (*ContentWriter, error) {
	head := Response{Informational: resp.Informational, Status: resp.Status, Header: resp.Header,
		Framing: Framing{Indeterminate: true, Truncated: 2}}
	b, err := head.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	return &ContentWriter{w: w}, nil
}

// Write writes p as one content chunk.
func (c *ContentWriter) Write(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("bhttp: write after close")
	}
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := c.w.Write(appendVarint(c.hdr[:0], uint64(len(p)))); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Close ends the content and writes the trailer section.
func (c *ContentWriter) Close(trailer []Field) error {
	if c.closed {
		return nil
	}
	c.closed = true
	b := []byte{0}
	b, err := appendSection(b, trailer, true)
	if err != nil {
		return err
	}
	_, err = c.w.Write(b)
	return err
}
