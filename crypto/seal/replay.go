package seal

// Replay window in the style of RFC 6479: a ring of 64-bit words, of which
// all but one cover the window, so that sliding it forward clears whole
// words instead of shifting bits.
const (
	replayWords = 32
	// ReplayWindowSize is how far behind the highest sequence number seen a
	// message may arrive and still be accepted once.
	ReplayWindowSize = (replayWords - 1) * 64
)

// ReplayWindow tracks the message sequence numbers seen in one session.
// Sequence numbers start at 1; 0 is never valid. It is not safe for
// concurrent use; the session table serializes access.
type ReplayWindow struct {
	top    uint64
	bitmap [replayWords]uint64
}

// Check reports whether seq would be accepted, without recording it.
func (w *ReplayWindow) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.top {
		return true
	}
	if w.top-seq >= ReplayWindowSize {
		return false
	}
	return w.bitmap[(seq>>6)%replayWords]&(1<<(seq&63)) == 0
}

// Accept records seq and reports whether it was new and inside the window.
func (w *ReplayWindow) Accept(seq uint64) bool {
	if !w.Check(seq) {
		return false
	}
	if seq > w.top {
		cur, idx := w.top>>6, seq>>6
		diff := idx - cur
		if diff > replayWords {
			diff = replayWords
		}
		for i := uint64(1); i <= diff; i++ {
			w.bitmap[(cur+i)%replayWords] = 0
		}
		w.top = seq
	}
	w.bitmap[(seq>>6)%replayWords] |= 1 << (seq & 63)
	return true
}

// Top returns the highest sequence number accepted.
func (w *ReplayWindow) Top() uint64 { return w.top }
