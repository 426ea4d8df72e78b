package gateway

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tearline/tearline/pki"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
)

// TestFreeTextControlCharactersRefused: a reason holding a control
// character or a bidirectional override is refused at the edge with
// InvalidArgument, naming the field and the character, and nothing
// changes (node.TestFreeTextRefusesControlCharacters covers every call).
func TestFreeTextControlCharactersRefused(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	prof, err := pki.LoadProfile(filepath.Join(f.dir, "USA"))
	if err != nil {
		t.Fatal(err)
	}
	is, _ := prof.Issued()
	admin := adminv1.NewAdminServiceClient(f.conn("USA", is, prof.Bundle))
	ctx := ctxT(t)
	wantInvalid := func(what string, err error, want string) {
		t.Helper()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("%s: %v, want InvalidArgument saying %q", what, err, want)
		}
	}
	_, err = admin.SuspendPartner(ctx, &adminv1.SuspendPartnerRequest{Party: "GBR", Reason: "incident\nGBR   127.0.0.1:7402  queued 0  active"})
	wantInvalid("SuspendPartner", err, "the reason (--reason): character 9 is U+000A, a control character")
	_, err = admin.SuspendSubscriber(ctx, &adminv1.SuspendSubscriberRequest{Name: DevSubscriber, Reason: "x\x1b[2J"})
	wantInvalid("SuspendSubscriber", err, "the reason (--reason): character 2 is U+001B, a control character")
	_, err = admin.DeclareCrisis(ctx, &adminv1.DeclareCrisisRequest{Topics: []string{"CT"}, Parties: []string{"GBR"}, MaxClassification: "SECRET",
		Duration: durationpb.New(time.Hour), Reason: "flood \u202eesrever"})
	wantInvalid("DeclareCrisis", err, "the reason (--reason): character 7 is U+202E, a bidirectional override")

	ps, err := admin.ListPartners(ctx, &adminv1.ListPartnersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps.GetPartners() {
		if p.GetSuspension() != nil {
			t.Fatalf("partner %s suspended by a refused call", p.GetParty())
		}
	}
	ss, err := admin.ListSubscribers(ctx, &adminv1.ListSubscribersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss.GetSubscribers() {
		if s.GetSuspension() != nil {
			t.Fatalf("subscriber %s suspended by a refused call", s.GetName())
		}
	}
	cs, err := admin.ListCrises(ctx, &adminv1.ListCrisesRequest{})
	if err != nil || len(cs.GetCrises()) != 0 {
		t.Fatalf("crises after a refused declaration: %v (%v)", cs.GetCrises(), err)
	}
}
