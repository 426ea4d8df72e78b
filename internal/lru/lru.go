// Package lru is a bounded map that forgets the least recently used part
// of what it holds: two generations, the current one and the previous one.
// When the current generation is full it becomes the previous one (the one
// before is dropped); a hit in the previous generation is carried into the
// current one. It is what the node's caches of verified, decoded and
// encoded things use: cheap, safe for concurrent use, and never larger than
// twice its size.
package lru

import "sync"

// Map holds at most 2*size entries.
type Map[K comparable, V any] struct {
	mu        sync.Mutex
	size      int
	cur, prev map[K]V
}

// New returns a Map whose generations hold size entries each.
func New[K comparable, V any](size int) *Map[K, V] {
	return &Map[K, V]{size: max(size, 1)}
}

// Get returns the value of k, if held.
func (m *Map[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	if ok {
		m.put(k, v)
	}
	return v, ok
}

// Put holds v as k's value.
func (m *Map[K, V]) Put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(k, v)
}

// Delete drops k from both generations.
func (m *Map[K, V]) Delete(k K) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cur, k)
	delete(m.prev, k)
}

func (m *Map[K, V]) put(k K, v V) {
	if m.cur == nil || len(m.cur) >= m.size {
		m.prev, m.cur = m.cur, make(map[K]V, m.size)
	}
	m.cur[k] = v
}

// Load returns k's value, making it with make (outside the lock; two
// callers may both make it, and one value wins) if it is not held. An
// error from make is returned and nothing is held.
func (m *Map[K, V]) Load(k K, make func() (V, error)) (V, error) {
	if v, ok := m.Get(k); ok {
		return v, nil
	}
	v, err := make()
	if err != nil {
		return v, err
	}
	m.Put(k, v)
	return v, nil
}
