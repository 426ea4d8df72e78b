package gateway

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/node/marking"
	"github.com/tearline/tearline/node/policy"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// A denial is FailedPrecondition only when the originator's consent could
// allow it: a release back to the originator is PermissionDenied, ORCON or
// not, since the originator already holds the report and cannot consent
// to itself.
func TestDeniedStatusCode(t *testing.T) {
	now := time.Now()
	release := func(t *testing.T, banner, to string) policy.Reason {
		t.Helper()
		m, err := marking.Parse(banner)
		if err != nil {
			t.Fatal(err)
		}
		return policy.Release(policy.ReleaseInput{
			Now: now, ReportID: "R1", Originator: "USA", Holder: "GBR", To: to,
			Portion:   policy.Portion{Index: 1, Marking: m},
			Agreement: &policy.Agreement{Partner: to, MaxClassification: "TOP SECRET", ValidUntil: now.Add(time.Hour)},
		})
	}
	tests := []struct {
		name   string
		reason policy.Reason
		code   codes.Code
		rule   string
	}{
		{"ORCON to a third party", release(t, "SECRET//REL TO CAN, GBR, USA//ORCON", "CAN"), codes.FailedPrecondition, "third-party-rule"},
		{"outside REL TO to a third party", release(t, "SECRET//REL TO GBR, USA", "CAN"), codes.PermissionDenied, "rel-to"},
		{"ORCON back to the originator", release(t, "SECRET//REL TO CAN, GBR, USA//ORCON", "USA"), codes.PermissionDenied, "originator-holds"},
		{"outside REL TO back to the originator", release(t, "SECRET//REL TO CAN, GBR", "USA"), codes.PermissionDenied, "originator-holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(deniedStatus([]policy.Reason{tt.reason}, "R1"))
			if st.Code() != tt.code {
				t.Errorf("code = %v, want %v (%s)", st.Code(), tt.code, tt.reason)
			}
			if info := errorInfo(st); info == nil || info.GetReason() != tt.rule || info.GetMetadata()["next"] != tt.reason.Next {
				t.Errorf("ErrorInfo = %v, want reason %s", info, tt.rule)
			}
			if tt.code == codes.PermissionDenied && tt.reason.Party == "USA" && strings.Contains(st.Message(), "consent") {
				t.Errorf("a denial back to the originator advises consent: %q", st.Message())
			}
		})
	}
}

// A holder's share back to the report's originator is refused, with
// PermissionDenied and the reason originator-holds, and never advises
// consent.
func TestShareBackToOriginatorStatus(t *testing.T) {
	f := startFed(t, "USA", "GBR", "CAN")
	usa, gbr := f.officer("USA"), f.officer("GBR")
	body := "the asset's name is BLUEBIRD"
	resp, err := usa.Publish(ctxT(t), &clientv1.PublishRequest{Portions: []*clientv1.NewPortion{
		{Banner: "SECRET//REL TO USA, GBR//ORCON", Body: []byte(body)},
		{Banner: "SECRET//REL TO USA, GBR, CAN", Body: []byte(body)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	awaitCount(t, gbr, 1)
	for _, portions := range [][]uint32{nil, {1}, {2}} {
		_, err = gbr.Share(ctxT(t), &clientv1.ShareRequest{Id: resp.GetId(), To: "USA", Portions: portions})
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied {
			t.Fatalf("share of portions %v back to the originator = %v, want PermissionDenied", portions, err)
		}
		info := errorInfo(st)
		if info == nil || info.GetReason() != "originator-holds" || info.GetMetadata()["report"] != resp.GetId() ||
			info.GetMetadata()["next"] != "none: USA is the report's originator and already holds it" {
			t.Fatalf("share of portions %v back to the originator: ErrorInfo = %v", portions, info)
		}
		if !strings.Contains(st.Message(), "USA is its originator and already holds it") || strings.Contains(st.Message(), "consent") {
			t.Fatalf("share of portions %v back to the originator: message %q", portions, st.Message())
		}
		if strings.Contains(st.Message(), "BLUEBIRD") || strings.Contains(st.Proto().String(), "BLUEBIRD") {
			t.Fatal("the denial leaks portion content")
		}
	}
}
