package seal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrMalformedBHTTP is wrapped by every error about an invalid Binary HTTP
// message (RFC 9292, Section 4).
var ErrMalformedBHTTP = errors.New("malformed binary http message")

// MediaTypeBHTTP is the media type of a Binary HTTP message.
const MediaTypeBHTTP = "message/bhttp"

// Framing indicators (RFC 9292, Section 3.3).
const (
	framingKnownRequest         = 0
	framingKnownResponse        = 1
	framingIndeterminateRequest = 2
	framingIndeterminateRespons = 3
)

// Field is one field line of a header or trailer section. Names are kept as
// they were encoded; RFC 9292 requires them in lowercase.
type Field struct {
	Name  string
	Value string
}

// Framing records how a message was laid out, so that a decoded message
// re-encodes byte for byte. The zero value is a complete known-length message
// without padding.
type Framing struct {
	// Indeterminate selects the indeterminate-length encoding.
	Indeterminate bool
	// Chunks are the content chunk sizes of an indeterminate-length message;
	// nil means one chunk holding the whole content.
	Chunks []int
	// Truncated counts the trailing empty sections left out: 1 drops the
	// trailer section, 2 also the content, 3 also the header section.
	Truncated int
	// Padding is the number of zero bytes after the message.
	Padding int
}

// Request is a Binary HTTP request.
type Request struct {
	Method, Scheme, Authority, Path string
	Header                          []Field
	Content                         []byte
	Trailer                         []Field
	Framing                         Framing
}

// InformationalResponse is a 1xx response that precedes the final one.
type InformationalResponse struct {
	Status int
	Header []Field
}

// Response is a Binary HTTP response.
type Response struct {
	Informational []InformationalResponse
	Status        int
	Header        []Field
	Content       []byte
	Trailer       []Field
	Framing       Framing
}

// Limits bound what a decoder accepts before any content: a peer cannot make
// it buffer more than this.
type Limits struct {
	// MaxFieldSection is the largest header or trailer section, and the
	// largest request control data, in bytes. Zero means 64 KiB.
	MaxFieldSection int
	// MaxFields is the most field lines in one section. Zero means 256.
	MaxFields int
}

func (l Limits) maxSection() int {
	if l.MaxFieldSection <= 0 {
		return 64 << 10
	}
	return l.MaxFieldSection
}

func (l Limits) maxFields() int {
	if l.MaxFields <= 0 {
		return 256
	}
	return l.MaxFields
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedBHTTP, fmt.Sprintf(format, args...))
}

// source is what the decoder reads from: a bytes.Reader or a bufio.Reader.
type source interface {
	io.Reader
	io.ByteScanner
}

// Decoder reads one Binary HTTP message from a stream, head first, then the
// content as a stream, then the trailer, so that bodies are never buffered
// whole.
type Decoder struct {
	src     source
	lim     Limits
	request bool
	framing Framing

	// content state
	remaining  uint64 // bytes left in the current chunk or known-length content
	contentEnd bool   // content fully read (trailer parsed or truncated)
	truncated  bool   // the message ended before the content
	started    bool
	trailer    []Field
	err        error
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	var s source
	switch v := r.(type) {
	case *bytes.Reader:
		s = v
	case *bufio.Reader:
		s = v
	default:
		s = bufio.NewReaderSize(r, 4096)
	}
	return &Decoder{src: s, lim: lim}
}

// atEOF reports whether the source is exhausted, without consuming a byte.
func (d *Decoder) atEOF() (bool, error) {
	_, err := d.src.ReadByte()
	if err == io.EOF {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, d.src.UnreadByte()
}

func (d *Decoder) varint(what string) (uint64, error) {
	v, err := readVarint(d.src)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return 0, malformed("truncated %s", what)
	}
	return v, err
}

func (d *Decoder) bytes(n uint64, max int, what string) ([]byte, error) {
	if n > uint64(max) {
		return nil, malformed("%s of %d bytes exceeds the limit of %d", what, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.src, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, malformed("truncated %s", what)
		}
		return nil, err
	}
	return b, nil
}

// ReadRequestHead reads the framing indicator, the control data and the
// header section of a request. Its Content and Trailer stay empty: read the
// content from Body and then call Trailer.
func (d *Decoder) ReadRequestHead() (*Request, error) {
	d.request = true
	fi, err := d.varint("framing indicator")
	if err != nil {
		return nil, err
	}
	switch fi {
	case framingKnownRequest:
	case framingIndeterminateRequest:
		d.framing.Indeterminate = true
	default:
		return nil, malformed("framing indicator %d is not a request", fi)
	}
	req := &Request{}
	budget := d.lim.maxSection()
	parts := [4]*string{&req.Method, &req.Scheme, &req.Authority, &req.Path}
	names := [4]string{"method", "scheme", "authority", "path"}
	for i, p := range parts {
		n, err := d.varint(names[i] + " length")
		if err != nil {
			return nil, err
		}
		b, err := d.bytes(n, budget, names[i])
		if err != nil {
			return nil, err
		}
		budget -= len(b)
		*p = string(b)
	}
	if err := validateControl(req); err != nil {
		return nil, err
	}
	h, ok, err := d.fieldSection("header")
	if err != nil {
		return nil, err
	}
	if !ok {
		d.truncateAt(3)
	}
	req.Header = h
	return req, nil
}

// ReadResponseHead reads the framing indicator, any informational responses,
// the final status and the header section of a response.
func (d *Decoder) ReadResponseHead() (*Response, error) {
	fi, err := d.varint("framing indicator")
	if err != nil {
		return nil, err
	}
	switch fi {
	case framingKnownResponse:
	case framingIndeterminateRespons:
		d.framing.Indeterminate = true
	default:
		return nil, malformed("framing indicator %d is not a response", fi)
	}
	resp := &Response{}
	for {
		status, err := d.varint("status code")
		if err != nil {
			return nil, err
		}
		switch {
		case status >= 100 && status <= 199:
			if len(resp.Informational) >= 16 {
				return nil, malformed("more than 16 informational responses")
			}
			h, ok, err := d.fieldSection("informational header")
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, malformed("truncated after informational status %d", status)
			}
			resp.Informational = append(resp.Informational, InformationalResponse{Status: int(status), Header: h})
			continue
		case status >= 200 && status <= 599:
			resp.Status = int(status)
		default:
			return nil, malformed("status code %d out of range", status)
		}
		break
	}
	h, ok, err := d.fieldSection("header")
	if err != nil {
		return nil, err
	}
	if !ok {
		d.truncateAt(3)
	}
	resp.Header = h
	return resp, nil
}

func (d *Decoder) truncateAt(n int) {
	d.framing.Truncated = n
	d.truncated = true
	d.contentEnd = true
}

// fieldSection reads one header or trailer section. ok is false when the
// message ends where the section would start (a truncated message).
func (d *Decoder) fieldSection(what string) (fields []Field, ok bool, err error) {
	eof, err := d.atEOF()
	if err != nil || eof {
		return nil, false, err
	}
	max := d.lim.maxSection()
	if !d.framing.Indeterminate {
		n, err := d.varint(what + " length")
		if err != nil {
			return nil, false, err
		}
		b, err := d.bytes(n, max, what+" section")
		if err != nil {
			return nil, false, err
		}
		r := bytes.NewReader(b)
		for r.Len() > 0 {
			f, err := readField(r, max, what)
			if err != nil {
				return nil, false, err
			}
			if len(fields) >= d.lim.maxFields() {
				return nil, false, malformed("%s section has more than %d fields", what, d.lim.maxFields())
			}
			fields = append(fields, f)
		}
		return fields, true, nil
	}
	lr := &limitedSource{src: d.src, left: max}
	for {
		nameLen, err := readVarint(lr)
		if err != nil {
			return nil, false, sectionErr(err, lr, what)
		}
		if nameLen == 0 {
			return fields, true, nil
		}
		f, err := readFieldBody(lr, nameLen, max, what)
		if err != nil {
			return nil, false, sectionErr(err, lr, what)
		}
		if len(fields) >= d.lim.maxFields() {
			return nil, false, malformed("%s section has more than %d fields", what, d.lim.maxFields())
		}
		fields = append(fields, f)
	}
}

func sectionErr(err error, lr *limitedSource, what string) error {
	if lr.left < 0 {
		return malformed("%s section exceeds the limit", what)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return malformed("truncated %s section", what)
	}
	return err
}

// limitedSource fails once more than left bytes were read.
type limitedSource struct {
	src  source
	left int
}

func (l *limitedSource) ReadByte() (byte, error) {
	if l.left <= 0 {
		l.left = -1
		return 0, io.ErrUnexpectedEOF
	}
	l.left--
	return l.src.ReadByte()
}

func (l *limitedSource) Read(p []byte) (int, error) {
	if len(p) > l.left {
		l.left = -1
		return 0, io.ErrUnexpectedEOF
	}
	n, err := io.ReadFull(l.src, p)
	l.left -= n
	return n, err
}

type fieldSource interface {
	io.Reader
	io.ByteReader
}

func readField(r fieldSource, max int, what string) (Field, error) {
	n, err := readVarint(r)
	if err != nil {
		return Field{}, malformed("truncated %s field", what)
	}
	return readFieldBody(r, n, max, what)
}

func readFieldBody(r fieldSource, nameLen uint64, max int, what string) (Field, error) {
	if nameLen == 0 {
		return Field{}, malformed("empty field name in %s", what)
	}
	if nameLen > uint64(max) {
		return Field{}, malformed("%s field name too long", what)
	}
	name := make([]byte, nameLen)
	if _, err := io.ReadFull(r, name); err != nil {
		return Field{}, malformed("truncated %s field name", what)
	}
	vl, err := readVarint(r)
	if err != nil {
		return Field{}, malformed("truncated %s field value", what)
	}
	if vl > uint64(max) {
		return Field{}, malformed("%s field value too long", what)
	}
	value := make([]byte, vl)
	if _, err := io.ReadFull(r, value); err != nil {
		return Field{}, malformed("truncated %s field value", what)
	}
	f := Field{Name: string(name), Value: string(value)}
	if err := validateField(f); err != nil {
		return Field{}, err
	}
	return f, nil
}

// Body returns the content as a stream. At its io.EOF the trailer has been
// read; any decoding error is returned from Read.
func (d *Decoder) Body() io.Reader { return bodyReader{d} }

type bodyReader struct{ d *Decoder }

func (b bodyReader) Read(p []byte) (int, error) { return b.d.readContent(p) }

func (d *Decoder) readContent(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.readContentStep(p)
	if err != nil && err != io.EOF {
		d.err = err
	}
	return n, err
}

func (d *Decoder) readContentStep(p []byte) (int, error) {
	for {
		if d.contentEnd {
			return 0, io.EOF
		}
		if d.remaining > 0 {
			if uint64(len(p)) > d.remaining {
				p = p[:d.remaining]
			}
			n, err := d.src.Read(p)
			d.remaining -= uint64(n)
			if err == io.EOF {
				if d.remaining > 0 {
					return n, malformed("truncated content")
				}
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		if d.started && !d.framing.Indeterminate {
			// Known-length content fully read.
			if err := d.readTrailer(); err != nil {
				return 0, err
			}
			continue
		}
		// Start of content (known-length) or of the next chunk.
		eof, err := d.atEOF()
		if err != nil {
			return 0, err
		}
		if eof {
			if d.started {
				return 0, malformed("truncated content: chunks not terminated")
			}
			d.truncateAt(2)
			continue
		}
		n, err := d.varint("content length")
		if err != nil {
			return 0, err
		}
		if n > maxVarint {
			return 0, malformed("content length out of range")
		}
		if d.framing.Indeterminate {
			if n == 0 {
				if err := d.readTrailer(); err != nil {
					return 0, err
				}
				continue
			}
			d.framing.Chunks = append(d.framing.Chunks, int(n))
		}
		d.started = true
		d.remaining = n
		if n == 0 && !d.framing.Indeterminate {
			if err := d.readTrailer(); err != nil {
				return 0, err
			}
		}
	}
}

func (d *Decoder) readTrailer() error {
	d.contentEnd = true
	t, ok, err := d.fieldSection("trailer")
	if err != nil {
		return err
	}
	if !ok {
		d.framing.Truncated = 1
		return nil
	}
	d.trailer = t
	return nil
}

// Finish reads the rest of the content (it must be empty unless Body was
// drained), the trailer and the padding, and checks that the padding is all
// zero. It returns the trailer.
func (d *Decoder) Finish() ([]Field, error) {
	if _, err := io.Copy(io.Discard, d.Body()); err != nil {
		return nil, err
	}
	if d.framing.Truncated == 0 {
		for {
			c, err := d.src.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			if c != 0 {
				return nil, malformed("non-zero padding")
			}
			d.framing.Padding++
		}
	} else if eof, err := d.atEOF(); err != nil || !eof {
		if err == nil {
			err = malformed("data after truncated message")
		}
		return nil, err
	}
	return d.trailer, nil
}

// Framing returns the layout seen so far; complete after Finish.
func (d *Decoder) Framing() Framing {
	f := d.framing
	if f.Indeterminate && len(f.Chunks) == 0 {
		f.Chunks = []int{}
	}
	return f
}

// DecodeRequest decodes a whole Binary HTTP request.
func DecodeRequest(b []byte) (*Request, error) {
	d := NewDecoder(bytes.NewReader(b), Limits{MaxFieldSection: len(b) + 1})
	req, err := d.ReadRequestHead()
	if err != nil {
		return nil, err
	}
	content, err := io.ReadAll(d.Body())
	if err != nil {
		return nil, err
	}
	req.Trailer, err = d.Finish()
	if err != nil {
		return nil, err
	}
	if len(content) > 0 {
		req.Content = content
	}
	req.Framing = normalizeChunks(d.Framing(), len(content))
	return req, nil
}

// DecodeResponse decodes a whole Binary HTTP response.
func DecodeResponse(b []byte) (*Response, error) {
	d := NewDecoder(bytes.NewReader(b), Limits{MaxFieldSection: len(b) + 1})
	resp, err := d.ReadResponseHead()
	if err != nil {
		return nil, err
	}
	content, err := io.ReadAll(d.Body())
	if err != nil {
		return nil, err
	}
	resp.Trailer, err = d.Finish()
	if err != nil {
		return nil, err
	}
	if len(content) > 0 {
		resp.Content = content
	}
	resp.Framing = normalizeChunks(d.Framing(), len(content))
	return resp, nil
}

// normalizeChunks turns a single chunk covering the content into nil, the
// encoder's default.
func normalizeChunks(f Framing, n int) Framing {
	if !f.Indeterminate || (len(f.Chunks) == 1 && f.Chunks[0] == n) || (n == 0 && len(f.Chunks) == 0) {
		f.Chunks = nil
	}
	return f
}

// AppendBinary appends the encoding of r, laid out as r.Framing says.
func (r *Request) AppendBinary(b []byte) ([]byte, error) {
	if err := validateControl(r); err != nil {
		return nil, err
	}
	fi := uint64(framingKnownRequest)
	if r.Framing.Indeterminate {
		fi = framingIndeterminateRequest
	}
	b = appendVarint(b, fi)
	for _, s := range []string{r.Method, r.Scheme, r.Authority, r.Path} {
		b = appendVarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return appendTail(b, r.Header, r.Content, r.Trailer, r.Framing)
}

// AppendBinary appends the encoding of r, laid out as r.Framing says.
func (r *Response) AppendBinary(b []byte) ([]byte, error) {
	if r.Status < 200 || r.Status > 599 {
		return nil, malformed("final status %d out of range", r.Status)
	}
	fi := uint64(framingKnownResponse)
	if r.Framing.Indeterminate {
		fi = framingIndeterminateRespons
	}
	b = appendVarint(b, fi)
	for _, ir := range r.Informational {
		if ir.Status < 100 || ir.Status > 199 {
			return nil, malformed("informational status %d out of range", ir.Status)
		}
		b = appendVarint(b, uint64(ir.Status))
		var err error
		if b, err = appendSection(b, ir.Header, r.Framing.Indeterminate); err != nil {
			return nil, err
		}
	}
	b = appendVarint(b, uint64(r.Status))
	return appendTail(b, r.Header, r.Content, r.Trailer, r.Framing)
}

func appendTail(b []byte, header []Field, content []byte, trailer []Field, f Framing) ([]byte, error) {
	if f.Truncated < 0 || f.Truncated > 3 {
		return nil, malformed("truncation %d out of range", f.Truncated)
	}
	if (f.Truncated >= 1 && len(trailer) > 0) || (f.Truncated >= 2 && len(content) > 0) || (f.Truncated >= 3 && len(header) > 0) {
		return nil, malformed("only empty sections can be truncated")
	}
	var err error
	if f.Truncated < 3 {
		if b, err = appendSection(b, header, f.Indeterminate); err != nil {
			return nil, err
		}
	}
	if f.Truncated < 2 {
		if !f.Indeterminate {
			b = appendVarint(b, uint64(len(content)))
			b = append(b, content...)
		} else {
			chunks := f.Chunks
			if chunks == nil && len(content) > 0 {
				chunks = []int{len(content)}
			}
			off := 0
			for _, n := range chunks {
				if n <= 0 || off+n > len(content) {
					return nil, malformed("chunk sizes do not cover the content")
				}
				b = appendVarint(b, uint64(n))
				b = append(b, content[off:off+n]...)
				off += n
			}
			if off != len(content) {
				return nil, malformed("chunk sizes do not cover the content")
			}
			b = append(b, 0)
		}
	}
	if f.Truncated < 1 {
		if b, err = appendSection(b, trailer, f.Indeterminate); err != nil {
			return nil, err
		}
	}
	for range f.Padding {
		b = append(b, 0)
	}
	return b, nil
}

func appendSection(b []byte, fields []Field, indeterminate bool) ([]byte, error) {
	size := 0
	for _, f := range fields {
		if err := validateField(f); err != nil {
			return nil, err
		}
		size += varintLen(uint64(len(f.Name))) + len(f.Name) + varintLen(uint64(len(f.Value))) + len(f.Value)
	}
	if !indeterminate {
		b = appendVarint(b, uint64(size))
	}
	for _, f := range fields {
		b = appendVarint(b, uint64(len(f.Name)))
		b = append(b, f.Name...)
		b = appendVarint(b, uint64(len(f.Value)))
		b = append(b, f.Value...)
	}
	if indeterminate {
		b = append(b, 0)
	}
	return b, nil
}

// validateControl applies the HTTP/2 rules for :method, :scheme and :path
// (RFC 9113, Section 8.3.1) that RFC 9292 adopts.
func validateControl(r *Request) error {
	if r.Method == "" || !isToken(r.Method) {
		return malformed("invalid method %q", r.Method)
	}
	if r.Scheme == "" || !validScheme(r.Scheme) {
		return malformed("invalid scheme %q", r.Scheme)
	}
	for i := 0; i < len(r.Authority); i++ {
		if c := r.Authority[i]; c <= ' ' || c >= 0x7f {
			return malformed("invalid authority")
		}
	}
	if r.Method == "CONNECT" {
		return malformed("CONNECT cannot be carried")
	}
	if r.Path == "" || (r.Path[0] != '/' && !(r.Path == "*" && r.Method == "OPTIONS")) {
		return malformed("invalid path %q", r.Path)
	}
	for i := 0; i < len(r.Path); i++ {
		if c := r.Path[i]; c <= ' ' || c >= 0x7f {
			return malformed("invalid byte 0x%02x in path", c)
		}
	}
	return nil
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// validateField applies RFC 9113, Section 8.2.1: lowercase token names, no
// pseudo-fields here, values without NUL, CR, LF or surrounding whitespace.
func validateField(f Field) error {
	if f.Name == "" {
		return malformed("empty field name")
	}
	if f.Name[0] == ':' {
		return malformed("pseudo-field %q not allowed", f.Name)
	}
	if !isToken(f.Name) || strings.ToLower(f.Name) != f.Name {
		return malformed("invalid field name %q", f.Name)
	}
	v := f.Value
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == 0 || c == '\r' || c == '\n' {
			return malformed("invalid byte in value of field %q", f.Name)
		}
	}
	if len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		return malformed("value of field %q has surrounding whitespace", f.Name)
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return s != ""
}
