package gateway

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tearline/tearline/pki"
	clientv1 "github.com/tearline/tearline/proto/tearline/client/v1"
)

// A cursor past the end of the feed (mistyped, or saved before the node's
// store was restored from a backup) is refused with OutOfRange and says
// where the feed ends, instead of a stream that waits silently for
// reports numbered past it.
func TestSubscribePastTheEnd(t *testing.T) {
	f := startFed(t, "USA", "GBR")
	analyst := f.client("USA", filepath.Join(f.dir, "USA", DevSubscriber))
	publishTitled(t, f.officer("USA"), 2)
	end, err := f.servers["USA"].Node().Store().FeedEnd()
	if err != nil {
		t.Fatal(err)
	}
	refused := func(req *clientv1.SubscribeRequest, want string) {
		t.Helper()
		sub, err := analyst.Subscribe(ctxT(t), req)
		if err == nil {
			_, err = sub.Recv()
		}
		if status.Code(err) != codes.OutOfRange || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("subscribe %+v: %v, want OutOfRange saying %q", req, err, want)
		}
	}
	refused(&clientv1.SubscribeRequest{After: end + 100}, "past the end of this node's feed")
	// The saved cursor, as a store restored from an older backup leaves it.
	id, _ := pki.NewIdentity("USA", pki.KindService, DevSubscriber)
	if err := f.servers["USA"].Node().Store().SaveCursor(time.Now(), CursorKey(id), end+5); err != nil {
		t.Fatal(err)
	}
	refused(&clientv1.SubscribeRequest{ResumeSaved: true}, "the cursor saved for "+DevSubscriber)
	// At the end itself the stream is fine: it waits for the next report.
	sub, err := analyst.Subscribe(ctxT(t), &clientv1.SubscribeRequest{After: end - 1, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Recv(); err != nil {
		t.Fatalf("a cursor inside the feed: %v", err)
	}
}
