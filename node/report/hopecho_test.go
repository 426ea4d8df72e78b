package report

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// A hop's from and to are echoed in an error only once they are party
// codes: a hostile sender's 60 KiB "party" with terminal escapes is not
// copied into the refusal, and so not into a security event.
func TestOpenHopDoesNotEchoBadParties(t *testing.T) {
	from := "\x1b[2J" + strings.Repeat("A", 60<<10)
	payload, err := proto.Marshal(&reportv1.Hop{ReportId: "other", From: from, To: "USA", Sent: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenHop(&reportv1.Signed{Kind: KindHop, Payload: payload}, make([]byte, 32), "r1", nil)
	if err == nil || len(err.Error()) > 200 || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("OpenHop of a hop with a hostile from: %d bytes of error", len(err.Error()))
	}
}
