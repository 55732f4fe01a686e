package appliance

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// blockResult is what reading one frame gave: the frame's header fields,
// or its error as the server acts on it.
type blockResult struct {
	stream    uint32
	fields    []hpack.HeaderField
	truncated bool
	ended     bool
	err       string
}

func resultOf(f http2.Frame, err error) blockResult {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case errors.As(err, &se):
		// The cause's text differs (x/net's error types are its own);
		// the server acts on the stream and code.
		return blockResult{err: "stream " + se.Code.String(), stream: se.StreamID}
	case errors.As(err, &ce):
		return blockResult{err: "connection " + http2.ErrCode(ce).String()}
	case err != nil:
		return blockResult{err: err.Error()}
	}
	r := blockResult{stream: f.Header().StreamID}
	if mh, ok := f.(*http2.MetaHeadersFrame); ok {
		r.fields, r.truncated, r.ended = mh.Fields, mh.Truncated, mh.StreamEnded()
	}
	return r
}

// readBlocks reads every frame of data as the engine's server does (own
// bool) or with x/net's Framer assembling header blocks, until an error
// that ends a connection.
func readBlocks(data []byte, maxList uint32, own bool) []blockResult {
	fr := http2.NewFramer(nil, bytes.NewReader(data))
	fr.MaxHeaderListSize = maxList
	var blk *h2block
	if own {
		blk = newH2Block(maxList)
	} else {
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	}
	var out []blockResult
	for len(out) < 1000 {
		f, err := fr.ReadFrame()
		if hf, ok := f.(*http2.HeadersFrame); ok && err == nil && own {
			f, err = blk.read(fr, hf)
		}
		r := resultOf(f, err)
		out = append(out, r)
		var se http2.StreamError
		if err != nil && !errors.As(err, &se) {
			break
		}
	}
	return out
}

// FuzzH2Block: the engine's header-block assembly gives what x/net's
// Framer gives for any frames a client sends: the same fields, truncation
// and errors, block after block (the HPACK table carries across).
func FuzzH2Block(f *testing.F) {
	seed := func(fn func(fr *http2.Framer, b func(...string) []byte)) {
		f.Add(h2Seed(fn), uint16(0))
		f.Add(h2Seed(fn), uint16(120))
	}
	req := []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/a"}
	seed(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true, BlockFragment: b(req...)})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndStream: true, EndHeaders: true, BlockFragment: b(req...)})
	})
	seed(func(fr *http2.Framer, b func(...string) []byte) {
		blk := b(append(req, "cookie", "a=1", "cookie", "b=2", "x-long", strings.Repeat("v", 300))...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:3]})
		fr.WriteContinuation(1, false, blk[3:10])
		fr.WriteContinuation(1, true, blk[10:])
		fr.WriteData(1, true, []byte("x"))
	})
	seed(func(fr *http2.Framer, b func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: b(append(req, "trailer", "x-a, x-b")...)})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true, BlockFragment: b("x-a", "1")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, BlockFragment: b("X-Upper", "1")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, EndHeaders: true, BlockFragment: b("x-a", "1", ":path", "/late")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, EndHeaders: true, BlockFragment: b(":path", "/", ":path", "/twice")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 9, EndHeaders: true, BlockFragment: b(":status", "200", ":path", "/")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 11, EndHeaders: true, BlockFragment: b(":bogus", "1")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 13, EndHeaders: true, BlockFragment: b("x-bad", "a\x00b")})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 15, EndHeaders: true, BlockFragment: []byte{0xff, 0xff, 0xff}})
	})
	seed(func(fr *http2.Framer, b func(...string) []byte) {
		blk := b(append(req, "x-bad", "a\nb", "x-more", "1")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:len(blk)-4]})
		fr.WriteContinuation(1, true, blk[len(blk)-4:])
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b(req...)})
		fr.WriteData(3, true, nil) // not a CONTINUATION
	})
	// A trailer announcing two names counts 8-2+1+2*32 = 71 bytes: over a
	// 70-byte limit, within 71.
	for _, limit := range []uint16{70, 71} {
		f.Add(h2Seed(func(fr *http2.Framer, b func(...string) []byte) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: b("trailer", "x-a, x-b")})
		}), limit)
	}
	f.Fuzz(func(t *testing.T, data []byte, maxList uint16) {
		own := readBlocks(data, uint32(maxList), true)
		want := readBlocks(data, uint32(maxList), false)
		if !reflect.DeepEqual(own, want) {
			t.Fatalf("the engine's blocks differ from x/net's:\n got %+v\nwant %+v", own, want)
		}
	})
}

// TestH2BlockAllocations: a request's header block costs one allocation
// besides x/net's HEADERS frame (the Framer's own assembly took about ten).
func TestH2BlockAllocations(t *testing.T) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}, {"user-agent", "t"}, {"accept", "*/*"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	first := bytes.Clone(hb.Bytes())
	hb.Reset()
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"}) // the rest now from the table
	for _, kv := range [][2]string{{":scheme", "https"}, {":authority", "localhost"}, {":path", "/a"}, {"user-agent", "t"}, {"accept", "*/*"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	again := hb.Bytes()
	var frames bytes.Buffer
	w := http2.NewFramer(&frames, nil)
	w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true, BlockFragment: first})
	const n = 100
	for i := 0; i <= n; i++ {
		w.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(3 + 2*i), EndStream: true, EndHeaders: true, BlockFragment: again})
	}
	fr := http2.NewFramer(nil, bytes.NewReader(frames.Bytes()))
	blk := newH2Block(1 << 16)
	next := func() *http2.MetaHeadersFrame {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		mh, err := blk.read(fr, f.(*http2.HeadersFrame))
		if err != nil {
			t.Fatal(err)
		}
		return mh
	}
	if mh := next(); len(mh.Fields) != 6 || mh.PseudoValue("path") != "/a" {
		t.Fatalf("first block: %+v", mh.Fields)
	}
	allocs := testing.AllocsPerRun(n, func() {
		if mh := next(); len(mh.Fields) != 6 {
			t.Fatalf("block: %+v", mh.Fields)
		}
	})
	// One for the HEADERS frame (x/net's ReadFrame), one for the block.
	if allocs > 2 {
		t.Fatalf("%.1f allocations per header block, want at most 2", allocs)
	}
}
