package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Record layer constants (PROTOCOL.md, "Records").
const (
	// MaxRecordPlaintext is the most plaintext bytes one record carries.
	MaxRecordPlaintext = 16384
	// RecordHeaderLen is the length of a record header: flags and length.
	RecordHeaderLen = 3
	// TagLen is the AEAD tag length of every supported AEAD.
	TagLen = 16
	// MaxRecordLen is the largest record on the wire.
	MaxRecordLen = RecordHeaderLen + MaxRecordPlaintext + TagLen

	flagFinal = 0x01
	nonceLen  = 12
	aadLen    = SessionIDLen + 1 + 8 + 4 + 1
)

// Direction says which way a message travels; each has its own key.
type Direction byte

// The two directions.
const (
	DirRequest  Direction = 0x01 // client to server
	DirResponse Direction = 0x02 // server to client
)

// SessionIDLen is the length of a session identifier.
const SessionIDLen = 16

// recordKey is one direction of a session.
type recordKey struct {
	aead cipher.AEAD
	iv   [nonceLen]byte
	sid  [SessionIDLen]byte
	dir  Direction
}

// recordCrypter holds the per-message state shared by sealing and opening.
// Its buffers live in the struct so a record costs no allocation.
type recordCrypter struct {
	k     *recordKey
	seq   uint64
	index uint32
	nonce [nonceLen]byte
	aad   [aadLen]byte
}

func (c *recordCrypter) init(k *recordKey, seq uint64) {
	c.k, c.seq, c.index = k, seq, 0
	copy(c.aad[:SessionIDLen], k.sid[:])
	c.aad[SessionIDLen] = byte(k.dir)
	binary.BigEndian.PutUint64(c.aad[SessionIDLen+1:], seq)
}

// prepare fills nonce and AAD for the current record index.
func (c *recordCrypter) prepare(flags byte) {
	binary.BigEndian.PutUint64(c.nonce[0:8], c.seq)
	binary.BigEndian.PutUint32(c.nonce[8:12], c.index)
	for i := range c.nonce {
		c.nonce[i] ^= c.k.iv[i]
	}
	binary.BigEndian.PutUint32(c.aad[SessionIDLen+9:], c.index)
	c.aad[aadLen-1] = flags
}

// sealInPlace seals the n plaintext bytes at buf[RecordHeaderLen:] into a
// complete record at the start of buf and returns it.
func (c *recordCrypter) sealInPlace(buf []byte, n int, final bool) ([]byte, error) {
	return c.seal(buf, buf[RecordHeaderLen:RecordHeaderLen+n], final)
}

// seal seals pt into a complete record at the start of buf, which must hold
// RecordHeaderLen+len(pt)+TagLen bytes; pt is either buf[RecordHeaderLen:]
// (in place) or does not overlap buf.
func (c *recordCrypter) seal(buf, pt []byte, final bool) ([]byte, error) {
	if len(pt) > MaxRecordPlaintext {
		return nil, fmt.Errorf("record of %d bytes exceeds %d", len(pt), MaxRecordPlaintext)
	}
	if c.index == ^uint32(0) {
		return nil, errors.New("message exceeds 2^32-1 records")
	}
	var flags byte
	if final {
		flags = flagFinal
	}
	c.prepare(flags)
	ct := c.k.aead.Seal(buf[RecordHeaderLen:RecordHeaderLen], c.nonce[:], pt, c.aad[:])
	buf[0] = flags
	binary.BigEndian.PutUint16(buf[1:3], uint16(len(ct)))
	c.index++
	return buf[:RecordHeaderLen+len(ct)], nil
}

// openInPlace authenticates and decrypts the record in rec (header
// included), returning the plaintext, which aliases rec.
func (c *recordCrypter) openInPlace(rec []byte) (pt []byte, final bool, err error) {
	if len(rec) < RecordHeaderLen+TagLen {
		return nil, false, fmt.Errorf("%w: record of %d bytes is shorter than its header and tag", ErrMalformed, len(rec))
	}
	flags := rec[0]
	if flags&^flagFinal != 0 {
		return nil, false, fmt.Errorf("%w: unknown record flags 0x%02x", ErrMalformed, flags)
	}
	n := int(binary.BigEndian.Uint16(rec[1:3]))
	if n != len(rec)-RecordHeaderLen || n > MaxRecordPlaintext+TagLen {
		return nil, false, fmt.Errorf("%w: record length %d does not match", ErrMalformed, n)
	}
	if c.index == ^uint32(0) {
		return nil, false, fmt.Errorf("%w: message exceeds 2^32-1 records", ErrMalformed)
	}
	c.prepare(flags)
	ct := rec[RecordHeaderLen:]
	pt, err = c.k.aead.Open(ct[:0], c.nonce[:], ct, c.aad[:])
	if err != nil {
		return nil, false, fmt.Errorf("record %d of message %d: %w", c.index, c.seq, ErrDecrypt)
	}
	c.index++
	return pt, flags == flagFinal, nil
}

// RecordSealer seals the records of one message into caller-owned buffers.
// It is the allocation-free core of RecordWriter, exposed for benchmarks and
// for callers that frame records themselves.
type RecordSealer struct{ c recordCrypter }

// Seal seals plaintext as the next record of the message into dst, which
// must have capacity for RecordHeaderLen+len(plaintext)+TagLen bytes and
// must not overlap plaintext, and returns the record.
func (s *RecordSealer) Seal(dst, plaintext []byte, final bool) ([]byte, error) {
	if cap(dst) < RecordHeaderLen+len(plaintext)+TagLen {
		return nil, errors.New("record buffer too small")
	}
	return s.c.seal(dst[:cap(dst)], plaintext, final)
}

// RecordOpener opens the records of one message in order.
type RecordOpener struct{ c recordCrypter }

// Open authenticates and decrypts rec (header included) in place and
// returns its plaintext, which aliases rec, and whether it was the final
// record.
func (o *RecordOpener) Open(rec []byte) ([]byte, bool, error) { return o.c.openInPlace(rec) }

// RecordWriter cuts a message into records, sealing each as it fills and
// writing it to the underlying writer. Close seals the final record.
type RecordWriter struct {
	c       recordCrypter
	w       io.Writer
	buf     []byte
	n       int
	records uint64
	closed  bool
	err     error
}

func newRecordWriter(w io.Writer, k *recordKey, seq uint64) *RecordWriter {
	rw := &RecordWriter{w: w, buf: getRecordBuf()}
	rw.c.init(k, seq)
	return rw
}

// Write buffers p, sealing and writing every record that fills up. A full
// record is held back until more data or Close says whether it is final.
func (rw *RecordWriter) Write(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	if rw.closed {
		return 0, errors.New("seal: write after close")
	}
	written := 0
	for len(p) > 0 {
		if rw.n == MaxRecordPlaintext {
			if err := rw.emit(false); err != nil {
				return written, err
			}
		}
		if rw.n == 0 && len(p) > MaxRecordPlaintext {
			// A whole record that more data follows: seal it straight from
			// p, without copying it into the buffer first.
			if err := rw.write(rw.c.seal(rw.buf, p[:MaxRecordPlaintext], false)); err != nil {
				return written, err
			}
			p = p[MaxRecordPlaintext:]
			written += MaxRecordPlaintext
			continue
		}
		c := copy(rw.buf[RecordHeaderLen+rw.n:RecordHeaderLen+MaxRecordPlaintext], p)
		rw.n += c
		p = p[c:]
		written += c
	}
	return written, nil
}

// Flush seals the buffered bytes, if any, as a non-final record.
func (rw *RecordWriter) Flush() error {
	if rw.err != nil {
		return rw.err
	}
	if rw.n == 0 || rw.closed {
		return nil
	}
	return rw.emit(false)
}

// Close seals the buffered bytes as the final record.
func (rw *RecordWriter) Close() error {
	if rw.closed {
		return rw.err
	}
	if rw.err != nil {
		return rw.err
	}
	err := rw.emit(true)
	rw.closed = true
	putRecordBuf(rw.buf)
	rw.buf = nil
	return err
}

// Records returns the number of records written so far.
func (rw *RecordWriter) Records() uint64 { return rw.records }

func (rw *RecordWriter) emit(final bool) error {
	rec, err := rw.c.sealInPlace(rw.buf, rw.n, final)
	rw.n = 0
	return rw.write(rec, err)
}

func (rw *RecordWriter) write(rec []byte, err error) error {
	if err != nil {
		rw.err = err
		return err
	}
	if _, err := rw.w.Write(rec); err != nil {
		rw.err = err
		return err
	}
	rw.records++
	return nil
}

// RecordReader opens the records of one message from a stream and returns
// their plaintext. It returns io.EOF only after the final record, and
// ErrTruncated when the stream ends before it.
type RecordReader struct {
	c       recordCrypter
	r       io.Reader
	buf     []byte
	plain   []byte
	final   bool
	records uint64
	err     error
}

func newRecordReader(r io.Reader, k *recordKey, seq uint64) *RecordReader {
	rr := &RecordReader{r: r, buf: getRecordBuf()}
	rr.c.init(k, seq)
	return rr
}

// Records returns the number of records opened so far.
func (rr *RecordReader) Records() uint64 { return rr.records }

// Read returns plaintext of the message in order.
func (rr *RecordReader) Read(p []byte) (int, error) {
	for len(rr.plain) == 0 {
		if rr.err != nil {
			return 0, rr.err
		}
		if rr.final {
			rr.err = rr.checkEnd()
			putRecordBuf(rr.buf)
			rr.buf, rr.plain = nil, nil
			return 0, rr.err
		}
		if err := rr.next(); err != nil {
			rr.err = err
			return 0, err
		}
	}
	n := copy(p, rr.plain)
	rr.plain = rr.plain[n:]
	return n, nil
}

// checkEnd makes sure nothing follows the final record.
func (rr *RecordReader) checkEnd() error {
	var one [1]byte
	n, err := io.ReadFull(rr.r, one[:])
	if n > 0 {
		return fmt.Errorf("%w: data after the final record", ErrMalformed)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return io.EOF
	}
	return err
}

func (rr *RecordReader) next() error {
	if _, err := io.ReadFull(rr.r, rr.buf[:RecordHeaderLen]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return ErrTruncated
		}
		return err
	}
	n := int(binary.BigEndian.Uint16(rr.buf[1:3]))
	if n < TagLen || n > MaxRecordPlaintext+TagLen {
		return fmt.Errorf("%w: record length %d out of range", ErrMalformed, n)
	}
	if _, err := io.ReadFull(rr.r, rr.buf[RecordHeaderLen:RecordHeaderLen+n]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return ErrTruncated
		}
		return err
	}
	pt, final, err := rr.c.openInPlace(rr.buf[:RecordHeaderLen+n])
	if err != nil {
		return err
	}
	rr.records++
	rr.plain, rr.final = pt, final
	return nil
}

// Prime opens the first record without consuming its plaintext, so a
// server can authenticate a message before acting on it.
func (rr *RecordReader) Prime() error {
	if rr.records > 0 || rr.err != nil {
		return rr.err
	}
	if err := rr.next(); err != nil {
		rr.err = err
		return err
	}
	return nil
}

// recordBufs recycles record buffers: a message costs two of them (one
// sealing, one opening) and they are too large to allocate per request.
var recordBufs = sync.Pool{New: func() any { return new([MaxRecordLen]byte) }}

func getRecordBuf() []byte { return recordBufs.Get().(*[MaxRecordLen]byte)[:] }

func putRecordBuf(b []byte) {
	if cap(b) == MaxRecordLen {
		recordBufs.Put((*[MaxRecordLen]byte)(b[:MaxRecordLen]))
	}
}
