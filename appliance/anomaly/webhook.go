package anomaly

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/appliance/alert"
)

// webhook POSTs alerts as JSON from one goroutine, retrying with exponential
// backoff; its queue is bounded and drops (and counts) when full.
type webhook struct {
	url     string
	timeout time.Duration
	retries int
	backoff time.Duration
	client  *http.Client
	logger  *slog.Logger

	queue chan alert.Alert
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	sent, failed, dropped atomic.Uint64
	lastDropLog           atomic.Int64 // unix seconds of the last "queue full" log line
}

func newWebhook(cfg Webhook, client *http.Client, logger *slog.Logger) (*webhook, error) {
	if err := checkHookURL(cfg.URL); err != nil {
		return nil, err
	}
	h := &webhook{url: cfg.URL, client: client, logger: logger.With("webhook", redactURL(cfg.URL)), done: make(chan struct{})}
	var err error
	if h.timeout, err = duration("anomaly.webhook.timeout", cfg.Timeout, DefaultHookTimeout); err != nil {
		return nil, err
	}
	if h.backoff, err = duration("anomaly.webhook.backoff", cfg.Backoff, DefaultHookBackoff); err != nil {
		return nil, err
	}
	switch {
	case cfg.Queue < 0:
		return nil, fmt.Errorf("anomaly.webhook.queue: must be > 0, got %d", cfg.Queue)
	case cfg.Queue == 0:
		cfg.Queue = DefaultHookQueue
	}
	switch {
	case cfg.Retries < -1 || cfg.Retries > 20:
		return nil, fmt.Errorf("anomaly.webhook.retries: must be -1 (never) to 20, got %d", cfg.Retries)
	case cfg.Retries == 0:
		h.retries = DefaultHookRetries
	case cfg.Retries == -1:
		h.retries = 0
	default:
		h.retries = cfg.Retries
	}
	if h.client == nil {
		h.client = &http.Client{}
	}
	h.queue = make(chan alert.Alert, cfg.Queue)
	return h, nil
}

// redactURL keeps scheme and host for logs: the path may carry a token.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Scheme + "://" + u.Host
	}
	return ""
}

func (h *webhook) start() {
	h.wg.Add(1)
	go h.run()
}

func (h *webhook) stop() {
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
	for {
		select {
		case <-h.queue:
			h.dropped.Add(1)
		default:
			return
		}
	}
}

func (h *webhook) enqueue(a alert.Alert) {
	select {
	case h.queue <- a:
	default:
		h.dropped.Add(1)
		now := time.Now().Unix()
		if last := h.lastDropLog.Load(); now-last >= 10 && h.lastDropLog.CompareAndSwap(last, now) {
			h.logger.Warn("webhook queue full, alerts dropped", "dropped_total", h.dropped.Load())
		}
	}
}

func (h *webhook) run() {
	defer h.wg.Done()
	for {
		select {
		case <-h.done:
			return
		case a := <-h.queue:
			h.deliver(a)
		}
	}
}

// deliver POSTs one alert, retrying network errors, 408, 429 and 5xx.
func (h *webhook) deliver(a alert.Alert) {
	body, err := json.Marshal(a)
	if err != nil { // cannot happen with these field types
		h.failed.Add(1)
		return
	}
	delay := h.backoff
	for attempt := 0; ; attempt++ {
		retry, err := h.post(body)
		if err == nil {
			h.sent.Add(1)
			return
		}
		if !retry || attempt >= h.retries {
			h.failed.Add(1)
			h.logger.Error("webhook delivery failed", "alert_kind", a.Kind, "attempts", attempt+1, "err", err)
			return
		}
		select {
		case <-h.done:
			h.failed.Add(1)
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, maxHookBackoff)
	}
}

func (h *webhook) post(body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	go func() { // a Close during a slow POST cancels it
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("building webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sealgate-alerts/1")
	resp, err := h.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the URL, whose path may carry a token
		}
		return true, fmt.Errorf("posting alert: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return false, fmt.Errorf("webhook answered %s (not retried: fix the URL or the receiver)", resp.Status)
	}
}
