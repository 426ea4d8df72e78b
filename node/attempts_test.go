package node

import (
	"testing"
	"time"
)

// A suspended identity's attempts are recorded at most once a minute, the
// next record counting those between; identities are counted apart.
func TestSuspendedAttemptsBounded(t *testing.T) {
	var a attempts
	now := time.Unix(1_800_000_000, 0)
	if ok, n := a.take("svc/a", now); !ok || n != 0 {
		t.Fatalf("first attempt: %v %d, want recorded", ok, n)
	}
	for i := range 3 {
		if ok, _ := a.take("svc/a", now.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatalf("attempt %d within a minute recorded again", i+2)
		}
	}
	if ok, n := a.take("svc/b", now.Add(time.Second)); !ok || n != 0 {
		t.Fatalf("another identity's first attempt: %v %d, want recorded", ok, n)
	}
	if ok, n := a.take("svc/a", now.Add(attemptEvery)); !ok || n != 3 {
		t.Fatalf("a minute later: %v %d, want recorded with the 3 between", ok, n)
	}
}
