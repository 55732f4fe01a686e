package seal

import "errors"

// Sentinel errors that callers branch on with errors.Is. Each maps to one
// protocol error response (see PROTOCOL.md, "Errors").
var (
	// ErrMalformed: the bytes do not parse as the protocol says.
	ErrMalformed = errors.New("malformed sealed message")
	// ErrUnsupported: a version, KEM, KDF or AEAD this side does not speak.
	ErrUnsupported = errors.New("unsupported algorithm or version")
	// ErrDecrypt: authentication of an HPKE message, ticket or record failed
	// (tampering, truncation, reordering, splicing or the wrong direction).
	ErrDecrypt = errors.New("authentication failed")
	// ErrTruncated: a message ended before its final record.
	ErrTruncated = errors.New("sealed message truncated before its final record")
	// ErrReplay: the message sequence number was already seen in this
	// session, or is older than the replay window.
	ErrReplay = errors.New("replayed or stale message sequence number")
	// ErrStale: the session predates the server's replay state; open a new
	// session.
	ErrStale = errors.New("session predates the server's replay state")
	// ErrExpired: the session ticket has expired or its ticket key is gone;
	// open a new session.
	ErrExpired = errors.New("session ticket expired")
	// ErrUnknownKey: no key configuration with this key id exists; fetch the
	// key configuration again.
	ErrUnknownKey = errors.New("unknown key identifier")
	// ErrRetiredKey: the key id was retired by rotation; fetch the key
	// configuration again.
	ErrRetiredKey = errors.New("retired key identifier")
	// ErrCapacity: the server tracks too many sessions to open another.
	ErrCapacity = errors.New("too many active sessions")
)
