package anomaly

import "container/list"

// lru is a map bounded to max entries that evicts the least recently used
// one. It is not safe for concurrent use; the Detector guards it.
type lru[K comparable, V any] struct {
	max   int
	items map[K]*list.Element
	order *list.List // front: most recently used
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, items: make(map[K]*list.Element), order: list.New()}
}

// get returns the value for k, creating it with mk when absent (evicting the
// oldest entry if the table is full), and marks it most recently used.
func (c *lru[K, V]) get(k K, mk func() V) *V {
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		return &e.Value.(*lruEntry[K, V]).val
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Back()
		delete(c.items, oldest.Value.(*lruEntry[K, V]).key)
		c.order.Remove(oldest)
	}
	ent := &lruEntry[K, V]{key: k, val: mk()}
	c.items[k] = c.order.PushFront(ent)
	return &ent.val
}

// peek returns the value for k without creating it or changing its age.
func (c *lru[K, V]) peek(k K) (*V, bool) {
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	return &e.Value.(*lruEntry[K, V]).val, true
}

func (c *lru[K, V]) len() int { return c.order.Len() }
