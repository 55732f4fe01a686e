package waf

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/types"
)

// engineKey identifies a compiled rule set. Routes whose keys are equal
// share one engine; the mode is applied per request, not compiled in.
type engineKey struct {
	paranoia  int
	threshold int
	maxBody   int64
	excluded  string // sorted, comma-separated rule ids
}

func (k engineKey) String() string {
	return fmt.Sprintf("paranoia=%d threshold=%d max_body=%d exclude=[%s]", k.paranoia, k.threshold, k.maxBody, k.excluded)
}

// Engine is a compiled Coraza WAF with the OWASP CRS. It is safe for
// concurrent use.
type Engine struct {
	waf       coraza.WAF
	key       engineKey
	rules     int           // rules loaded
	buildTime time.Duration // how long compiling took
}

// Rules reports how many rules the engine loaded.
func (e *Engine) Rules() int { return e.rules }

// BuildTime reports how long compiling the engine took.
func (e *Engine) BuildTime() time.Duration { return e.buildTime }

// Cache shares compiled engines between routes. Compiling the CRS takes a
// noticeable fraction of a second and tens of MB, so the daemon should build
// one Cache per config load (or keep one across reloads to reuse engines whose
// settings did not change) and pass it in Deps. It is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	engines map[engineKey]*cacheEntry
}

type cacheEntry struct {
	once sync.Once
	eng  *Engine
	err  error
}

// NewCache returns an empty engine cache.
func NewCache() *Cache { return &Cache{engines: make(map[engineKey]*cacheEntry)} }

// Len reports how many distinct engines the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.engines)
}

func (c *Cache) get(k engineKey, exclude []int) (*Engine, error) {
	c.mu.Lock()
	e, ok := c.engines[k]
	if !ok {
		e = &cacheEntry{}
		c.engines[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() { e.eng, e.err = buildEngine(k, exclude) })
	return e.eng, e.err
}

// errUnknownRule is returned (wrapped) when an exclusion names no loaded rule.
type errUnknownRule struct{ index, id int }

func (e *errUnknownRule) Error() string {
	return fmt.Sprintf("exclude_rules[%d]: no rule %d in the embedded core rule set", e.index, e.id)
}

// buildEngine compiles the CRS with sealgate's base settings: request body
// inspection in memory up to maxBody (Coraza's limit is one byte more, so
// only a body the WAF truncated raises INBOUND_DATA_ERROR, and a truncated
// body that no longer parses is not refused as malformed), response bodies never inspected (DLP
// does that), no Coraza audit log (sealgate's audit log records matches), all
// common API methods allowed (method policy belongs to validation).
func buildEngine(k engineKey, exclude []int) (*Engine, error) {
	var ids []int
	var mu sync.Mutex
	directives := baseDirectives(k, exclude)
	start := time.Now()
	cfg := experimental.WAFConfigWithRuleObserver(coraza.NewWAFConfig().WithRootFS(coreruleset.FS),
		func(r types.RuleMetadata) {
			mu.Lock()
			ids = append(ids, r.ID())
			mu.Unlock()
		})
	w, err := coraza.NewWAF(cfg.WithDirectives(directives))
	if err != nil {
		if strings.Contains(err.Error(), "filesystem access check") {
			return nil, fmt.Errorf("compiling core rule set: %w (Coraza needs a writable temporary directory: set TMPDIR or PrivateTmp=yes in the unit)", err)
		}
		return nil, fmt.Errorf("compiling core rule set: %w", err)
	}
	for i, id := range exclude {
		if !slices.Contains(ids, id) {
			return nil, &errUnknownRule{i, id}
		}
	}
	return &Engine{waf: w, key: k, rules: len(ids), buildTime: time.Since(start)}, nil
}

func baseDirectives(k engineKey, exclude []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
SecRuleEngine On
SecRequestBodyAccess On
SecResponseBodyAccess Off
SecRequestBodyLimit %[1]d
SecRequestBodyInMemoryLimit %[1]d
SecRequestBodyLimitAction ProcessPartial
SecRequestBodyJsonDepthLimit 1024
SecArgumentsLimit 1000
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQUEST_HEADERS:Content-Type "^application/[a-z0-9.-]+[+]json" "id:200006,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2,chain"
  SecRule INBOUND_DATA_ERROR "@eq 0" ""
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:200003,phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation.'"
Include @crs-setup.conf.example
SecAction "id:900000,phase:1,pass,t:none,nolog,setvar:tx.blocking_paranoia_level=%[2]d"
SecAction "id:900110,phase:1,pass,t:none,nolog,setvar:tx.inbound_anomaly_score_threshold=%[3]d,setvar:tx.outbound_anomaly_score_threshold=4"
SecAction "id:900200,phase:1,pass,t:none,nolog,setvar:'tx.allowed_methods=GET HEAD POST PUT PATCH DELETE OPTIONS'"
Include @owasp_crs/REQUEST-*.conf
`, k.maxBody+1, k.paranoia, k.threshold)
	for _, id := range exclude {
		b.WriteString("SecRuleRemoveById " + strconv.Itoa(id) + "\n")
	}
	return b.String()
}
