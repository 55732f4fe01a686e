package demoauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/appliance/policy"
)

func TestNewCreatesThenReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	first, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{KeyFile: 0o600, JWKSFile: 0o644, ".": 0o700} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	jwks, _ := os.ReadFile(first.JWKSPath())
	if strings.Contains(string(jwks), `"d"`) {
		t.Fatal("jwks.json contains the private key")
	}
	second, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.KeyID() != second.KeyID() {
		t.Fatal("reloading the demo directory made a new key; tokens printed earlier would stop working")
	}
}

func TestNewRejectsCorruptKey(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600)
	if _, err := New(dir); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("New: %v", err)
	}
}

func TestTokensVerifyUnderDemoPolicy(t *testing.T) {
	iss, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config(iss.JWKSPath())
	if err := policy.Validate("demo", cfg); err != nil {
		t.Fatalf("demo policy invalid: %v", err)
	}
	a, err := authn.New(cfg.Auth, authn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tests := []struct {
		name   string
		sub    string
		scopes []string
		ttl    time.Duration
		age    time.Duration // how long ago the token was issued
		ok     bool
	}{
		{"alice", Alice, nil, time.Hour, 0, true},
		{"bob with list scope", Bob, []string{"customers:list"}, time.Minute, 0, true},
		{"expired", Alice, nil, time.Minute, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss.now = func() time.Time { return time.Now().Add(-tt.age) }
			defer func() { iss.now = time.Now }()
			tok, err := iss.Token(tt.sub, tt.scopes, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.VerifyToken(context.Background(), tok)
			if (err == nil) != tt.ok {
				t.Fatalf("verify: %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (id.Subject != tt.sub || strings.Join(id.Scopes, " ") != strings.Join(tt.scopes, " ")) {
				t.Fatalf("identity %+v", id)
			}
		})
	}
	if _, err := iss.Token("", nil, time.Hour); err == nil {
		t.Fatal("token without subject")
	}
}
