// Package syncbuf is a bytes.Buffer that one goroutine may write while
// another reads it: the output of a process or server that a test reads
// as it runs.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it; the zero value is ready. Max, when
// set, is how many bytes it keeps: later writes are taken and dropped.
type Buffer struct {
	Max int
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p (or drops it past Max); it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Max > 0 && b.buf.Len() > b.Max {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
