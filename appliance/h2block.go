package appliance

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2block assembles a header block (a HEADERS frame and its CONTINUATION
// frames) into an http2.MetaHeadersFrame: what x/net's Framer does when its
// ReadMetaHeaders is set, with the same checks, limits and errors, field
// for field. FuzzH2Block holds the two to the same results.
//
// Why not the Framer's own: it makes a MetaHeadersFrame, an emit closure
// and a field slice grown by appending for every block, about ten
// allocations per request, which were most of what a request allocated
// under scenario 2's load. Here the decoder and its emit function are made
// once per connection, fields gather in a slice kept across blocks, and a
// block's frame and fields are one allocation.
type h2block struct {
	dec     *hpack.Decoder
	maxList uint32 // the Framer's MaxHeaderListSize

	// One block's state.
	fields                        []hpack.HeaderField
	headersRemain, trailersRemain uint32
	sawRegular, truncated         bool
	invalid                       error
}

func newH2Block(maxList uint32) *h2block {
	if maxList == 0 {
		maxList = 16 << 20 // the Framer's default
	}
	b := &h2block{maxList: maxList}
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(int(maxList))
	return b
}

// emit takes one decoded field, as readMetaFrame's emit function does.
func (b *h2block) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// Not the value: it may be sensitive.
		b.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.invalid = errPseudoAfterRegular
		}
	} else {
		b.sawRegular = true
		if !validWireName(hf.Name) {
			b.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if b.invalid != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	remain, size := &b.headersRemain, hf.Size()
	if hf.Name == "trailer" {
		// Each name a trailer announces is counted as a field of its own.
		remain = &b.trailersRemain
		n := uint32(strings.Count(hf.Value, ",") + 1)
		size = uint32(len(hf.Value)) - n + 1 + n*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		b.dec.SetEmitEnabled(false)
		b.truncated = true
		b.headersRemain, b.trailersRemain = 0, 0
		return
	}
	*remain -= size
	b.fields = append(b.fields, hf)
}

var (
	errPseudoAfterRegular  = errors.New("pseudo header field after regular")
	errMixPseudoHeaderKind = errors.New("mix of request and response pseudo headers")
)

// validWireName reports whether v is a field name as HTTP/2 sends it: a
// token, in lower case.
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// h2Meta is a block's frame with room for its fields: requests carry a
// handful, so most blocks are one allocation.
type h2Meta struct {
	m      http2.MetaHeadersFrame
	fields [8]hpack.HeaderField
}

// read assembles the block hf starts, reading its CONTINUATION frames
// from fr (whose frame-order check guarantees they follow on hf's stream).
// Errors are readMetaFrame's: a connection error for a block far over the
// size limit, a field after an invalid one or a decoding failure; a stream
// error for an invalid field or pseudo-header set.
func (b *h2block) read(fr *http2.Framer, hf *http2.HeadersFrame) (*http2.MetaHeadersFrame, error) {
	b.fields = b.fields[:0]
	b.headersRemain, b.trailersRemain = b.maxList, b.maxList
	b.sawRegular, b.truncated, b.invalid = false, false, nil
	b.dec.SetEmitEnabled(true)
	defer b.forget()

	frag, ended := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		// Far over the limit, or more after an invalid field: the
		// connection ends rather than the block being decoded.
		if int64(len(frag)) > 2*int64(b.headersRemain+b.trailersRemain) || b.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := b.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf := f.(*http2.ContinuationFrame)
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := b.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if b.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: b.invalid}
	}
	if err := checkPseudos(b.fields); err != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	var mh *http2.MetaHeadersFrame
	if len(b.fields) <= len(h2Meta{}.fields) {
		m := &h2Meta{}
		n := copy(m.fields[:], b.fields)
		m.m.Fields = m.fields[:n:n]
		mh = &m.m
	} else {
		mh = &http2.MetaHeadersFrame{Fields: append([]hpack.HeaderField(nil), b.fields...)}
	}
	if len(mh.Fields) == 0 {
		mh.Fields = nil // as the Framer leaves it
	}
	mh.HeadersFrame, mh.Truncated = hf, b.truncated
	return mh, nil
}

// forget drops the block's fields, so the connection keeps no request's
// strings.
func (b *h2block) forget() { clear(b.fields) }

// checkPseudos is MetaHeadersFrame's check of its pseudo-header fields
// (which lead the block): known names, none twice, not both a request's
// and a response's.
func checkPseudos(fields []hpack.HeaderField) error {
	var request, response bool
	for i, hf := range fields {
		if !hf.IsPseudo() {
			break
		}
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, prev := range fields[:i] {
			if hf.Name == prev.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if request && response {
		return errMixPseudoHeaderKind
	}
	return nil
}
