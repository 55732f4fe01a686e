package dlp

// Kind is a class of sensitive data. Its name is the metric label and the
// key in the config's detectors and actions.
type Kind uint8

// The kinds of sensitive data, in the order they appear in metrics and logs.
const (
	KindCard   Kind = iota // payment card number (PAN)
	KindSSN                // US social security number, AAA-GG-SSSS
	KindIBAN               // international bank account number
	KindEmail              // e-mail address
	KindPhone              // E.164 phone number
	KindSecret             // cloud keys, private keys, JWTs, API tokens
	KindField              // value of a configured JSON field
	numKinds
)

// numDetectors is the number of pattern detectors; KindField is driven by
// json_fields instead.
const numDetectors = int(KindField)

var kindNames = [numKinds]string{"card", "ssn", "iban", "email", "phone", "secret", "field"}

// String returns the kind's config and metric name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

func kindByName(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Action is what happens to a response when a kind is found in it.
type Action uint8

// The actions, from mildest to strongest.
const (
	ActionLog    Action = iota // count and log kind and offset, pass the bytes
	ActionRedact               // mask the value in place, same length
	ActionBlock                // withhold the whole response (502) and alert
)

var actionNames = [...]string{"log", "redact", "block"}

// String returns the action's config and metric name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

func actionByName(s string) (Action, bool) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), true
		}
	}
	return 0, false
}

// secretType names the detector behind a KindSecret finding for logs; it is
// never a metric label.
type secretType uint8

const (
	secNone secretType = iota
	secAWS
	secPEM
	secJWT
	secGitHub
	secSlack
	secStripe
	secGitLab
	secGoogle
)

var secretTypeNames = [...]string{"", "aws_access_key_id", "private_key", "jwt", "github_token", "slack_token", "stripe_key", "gitlab_token", "google_api_key"}

func (t secretType) String() string { return secretTypeNames[t] }
