package lru

import "testing"

func TestMapForgetsOldestGeneration(t *testing.T) {
	m := New[int, string](2)
	m.Put(1, "a")
	m.Put(2, "b")
	m.Put(3, "c") // {1,2} become the previous generation
	if v, ok := m.Get(1); !ok || v != "a" {
		t.Fatalf("Get(1) = %q, %v: the previous generation is still held", v, ok)
	}
	// 1 was carried into the current generation {3,1}; 4 starts a new one.
	m.Put(4, "d")
	if _, ok := m.Get(2); ok {
		t.Error("2 was neither used nor in the last two generations but is still held")
	}
	for _, k := range []int{1, 3, 4} {
		if _, ok := m.Get(k); !ok {
			t.Errorf("%d was dropped too early", k)
		}
	}
}

func TestDelete(t *testing.T) {
	m := New[int, string](2)
	m.Put(1, "a")
	m.Put(2, "b")
	m.Put(3, "c") // {1,2} become the previous generation
	m.Delete(1)   // in the previous generation
	m.Delete(3)   // in the current one
	for _, k := range []int{1, 3} {
		if v, ok := m.Get(k); ok {
			t.Errorf("Get(%d) = %q after Delete", k, v)
		}
	}
	if v, ok := m.Get(2); !ok || v != "b" {
		t.Errorf("Get(2) = %q, %v: Delete dropped another key", v, ok)
	}
}

func TestMapBounded(t *testing.T) {
	m := New[int, int](10)
	for i := range 1000 {
		m.Put(i, i)
	}
	if n := len(m.cur) + len(m.prev); n > 20 {
		t.Errorf("holds %d entries, want at most 20", n)
	}
}

func TestLoad(t *testing.T) {
	m := New[string, int](4)
	made := 0
	mk := func() (int, error) { made++; return 7, nil }
	for range 3 {
		if v, err := m.Load("k", mk); err != nil || v != 7 {
			t.Fatalf("Load = %d, %v", v, err)
		}
	}
	if made != 1 {
		t.Errorf("made %d times, want once", made)
	}
	if _, err := m.Load("bad", func() (int, error) { return 0, errTest }); err != errTest {
		t.Errorf("Load error = %v", err)
	}
	if _, ok := m.Get("bad"); ok {
		t.Error("a value whose making failed is held")
	}
}

var errTest = errorString("test")

type errorString string

func (e errorString) Error() string { return string(e) }
