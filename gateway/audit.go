package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tearline/tearline/node"
	"github.com/tearline/tearline/node/store"
	adminv1 "github.com/tearline/tearline/proto/tearline/admin/v1"
	federationv1 "github.com/tearline/tearline/proto/tearline/federation/v1"
	reportv1 "github.com/tearline/tearline/proto/tearline/report/v1"
)

// certText describes a certificate for the audit log.
func certText(c *x509.Certificate) string {
	if c == nil {
		return "(none)"
	}
	return fmt.Sprintf("serial %x, valid %s to %s", c.SerialNumber, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
}

// fetchDigests asks a partner's node for its audit entry hashes, over the
// same mutual TLS as the federation link.
func (s *Server) fetchDigests(ctx context.Context, party string, seqs []uint64) (uint64, [][]byte, *reportv1.Signed, error) {
	d, ok := s.dialers[party]
	if !ok {
		return 0, nil, nil, fmt.Errorf("no link to %s", party)
	}
	conn, err := grpc.NewClient(d.address, append([]grpc.DialOption{grpc.WithTransportCredentials(d.creds)}, d.opts...)...)
	if err != nil {
		return 0, nil, nil, err
	}
	defer conn.Close()
	resp, err := federationv1.NewFederationServiceClient(conn).AuditDigests(ctx, &federationv1.AuditDigestsRequest{Seqs: seqs})
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.GetEntries(), resp.GetDigests(), resp.GetLatestCheckpoint(), nil
}

// serveMetrics serves Prometheus text at /metrics when metrics_listen is
// set, until ctx ends.
func (s *Server) serveMetrics(ctx context.Context) error {
	if s.metrics == nil {
		<-ctx.Done()
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, s.node)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.metrics) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-errc
	return nil
}

// writeMetrics writes the node's metrics in the Prometheus text format.
func writeMetrics(w io.Writer, n *node.Node) {
	counts := n.AuditMetrics().Counts()
	fmt.Fprintln(w, "# HELP tearline_audit_anomalies_total Anomalies raised as security events: delivery rate, repeated denials, audit chain failures (own or a partner's).")
	fmt.Fprintln(w, "# TYPE tearline_audit_anomalies_total counter")
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(w, "tearline_audit_anomalies_total{kind=%q} %d\n", k, counts[k])
	}
	if seq, _, err := n.Store().AuditHead(); err == nil {
		fmt.Fprintln(w, "# HELP tearline_audit_entries Entries in the node's audit log.")
		fmt.Fprintln(w, "# TYPE tearline_audit_entries gauge")
		fmt.Fprintf(w, "tearline_audit_entries %d\n", seq)
	}
	st := n.Store().Stats()
	fmt.Fprintln(w, "# HELP tearline_store_commit_seconds Write transactions the node's store committed since it started, each made durable by its log record (one write and one fdatasync of the log), by wall time from the transaction's start to that fdatasync.")
	fmt.Fprintln(w, "# TYPE tearline_store_commit_seconds histogram")
	for i, le := range store.CommitBounds {
		fmt.Fprintf(w, "tearline_store_commit_seconds_bucket{le=\"%g\"} %d\n", le.Seconds(), st.CommitsWithin[i])
	}
	fmt.Fprintf(w, "tearline_store_commit_seconds_bucket{le=\"+Inf\"} %d\n", st.Commits)
	fmt.Fprintf(w, "tearline_store_commit_seconds_sum %.6f\n", st.CommitTime.Seconds())
	fmt.Fprintf(w, "tearline_store_commit_seconds_count %d\n", st.Commits)
	fmt.Fprintln(w, "# HELP tearline_store_writes_total Writes those commits made to the store file, not synced (a checkpoint makes them durable): each B+tree page rewritten (with its overflow) and the meta page, each at its own place.")
	fmt.Fprintln(w, "# TYPE tearline_store_writes_total counter")
	fmt.Fprintf(w, "tearline_store_writes_total %d\n", st.Writes)
	fmt.Fprintln(w, "# HELP tearline_store_write_seconds_total The part of the commits' time spent writing pages and the meta page to the store file.")
	fmt.Fprintln(w, "# TYPE tearline_store_write_seconds_total counter")
	fmt.Fprintf(w, "tearline_store_write_seconds_total %.6f\n", st.WriteTime.Seconds())
	for _, m := range []struct{ name, help, value string }{
		{"tearline_store_log_records_total", "Log records the commits appended, one a commit that changed something.", fmt.Sprint(st.LogRecords)},
		{"tearline_store_log_bytes_total", "Bytes of those records.", fmt.Sprint(st.LogBytes)},
		{"tearline_store_log_seconds_total", "The part of the commits' time spent writing their log records and making each durable (fdatasync).", fmt.Sprintf("%.6f", st.LogTime.Seconds())},
		{"tearline_store_checkpoints_total", "Checkpoints made since the node started: each makes the store file durable (one fdatasync of every page written since the last) and records it, so that the log's records before it are no longer needed.", fmt.Sprint(st.Checkpoints)},
		{"tearline_store_checkpoint_seconds_total", "Time spent in those checkpoints; commits go on meanwhile.", fmt.Sprintf("%.6f", st.CheckpointTime.Seconds())},
		{"tearline_store_durable_waits_total", "Reads that found a commit they read not yet durable (its log record's fdatasync still running) and waited for it before handing it on: a subscriber's feed, a partner's outbox, a write that changed nothing.", fmt.Sprint(st.DurableWaits)},
		{"tearline_store_durable_wait_seconds_total", "Time spent in those waits, summed over the readers.", fmt.Sprintf("%.6f", st.DurableWaitTime.Seconds())},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %s\n", m.name, m.help, m.name, m.name, m.value)
	}
	writeMemoryMetrics(w)
}

// writeMemoryMetrics writes the process's own memory as the Go runtime
// counts it against memory_limit_mib, the GC target (gc_percent), and the
// memory limit if one is set.
func writeMemoryMetrics(w io.Writer) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 && s[1].Value.Kind() == metrics.KindUint64 {
		fmt.Fprintln(w, "# HELP tearline_memory_bytes The node process's own memory (Go heap, stacks, runtime; not the store file's mapped pages), as memory_limit_mib counts it.")
		fmt.Fprintln(w, "# TYPE tearline_memory_bytes gauge")
		fmt.Fprintf(w, "tearline_memory_bytes %d\n", s[0].Value.Uint64()-s[1].Value.Uint64())
	}
	if s[2].Value.Kind() == metrics.KindUint64 {
		fmt.Fprintln(w, "# HELP tearline_gc_percent How far the heap may grow over what is live before a collection, percent (gc_percent, or GOGC; -1: collection off).")
		fmt.Fprintln(w, "# TYPE tearline_gc_percent gauge")
		// The runtime keeps "off" as -1 in a uint64.
		fmt.Fprintf(w, "tearline_gc_percent %d\n", int64(s[2].Value.Uint64()))
	}
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		fmt.Fprintln(w, "# HELP tearline_memory_limit_bytes The soft limit on tearline_memory_bytes (memory_limit_mib or GOMEMLIMIT).")
		fmt.Fprintln(w, "# TYPE tearline_memory_limit_bytes gauge")
		fmt.Fprintf(w, "tearline_memory_limit_bytes %d\n", limit)
	}
}

func (s *federationService) AuditDigests(ctx context.Context, req *federationv1.AuditDigestsRequest) (*federationv1.AuditDigestsResponse, error) {
	if len(req.GetSeqs()) > node.MaxDigestsPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d sequence numbers per call", node.MaxDigestsPerCall)
	}
	entries, digests, latest, err := s.node.AuditDigests(ctx, req.GetSeqs())
	if err != nil {
		return nil, toStatus(s.log, "AuditDigests", err)
	}
	return &federationv1.AuditDigestsResponse{Entries: entries, Digests: digests, LatestCheckpoint: latest}, nil
}

func (s *adminService) VerifyAudit(ctx context.Context, _ *adminv1.VerifyAuditRequest) (*adminv1.VerifyAuditResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.node.VerifyAudit(ctx, by)
	if err != nil {
		return nil, toStatus(s.log, "VerifyAudit", err)
	}
	out := &adminv1.VerifyAuditResponse{Ok: res.OK, Entries: res.Entries, Reason: res.Reason, Checkpoints: uint64(res.Checkpoints), CheckpointSeq: res.CheckpointSeq}
	if !res.OK {
		out.FirstBad = &res.FirstBad
	}
	return out, nil
}

func (s *adminService) ExportAudit(req *adminv1.ExportAuditRequest, stream grpc.ServerStreamingServer[adminv1.ExportAuditResponse]) error {
	ctx := stream.Context()
	by, err := mustCaller(ctx)
	if err != nil {
		return err
	}
	var since time.Time
	if req.GetSince() != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			return status.Errorf(codes.InvalidArgument, "since: %v", err)
		}
		since = req.GetSince().AsTime()
	}
	err = s.node.ExportAudit(ctx, by, since, func(it node.ExportItem) error {
		resp := &adminv1.ExportAuditResponse{}
		switch {
		case it.Header != nil:
			h := it.Header
			ah := &adminv1.AuditExportHeader{Party: h.Party, Node: h.Node, Exported: timestamppb.Now(), FirstSeq: h.FirstSeq, LastSeq: h.LastSeq}
			if !since.IsZero() {
				ah.Since = timestamppb.New(since)
			}
			resp.Item = &adminv1.ExportAuditResponse_Header{Header: ah}
		case it.Checkpoint != nil:
			resp.Item = &adminv1.ExportAuditResponse_Checkpoint{Checkpoint: it.Checkpoint}
		default:
			resp.Item = &adminv1.ExportAuditResponse_Entry{Entry: &adminv1.AuditRecord{Seq: it.Seq, Canonical: it.Canonical}}
		}
		return stream.Send(resp)
	})
	if errors.Is(err, node.ErrAuditBroken) {
		return status.Errorf(codes.FailedPrecondition, "%s; run 'tearline audit verify'", strings.TrimPrefix(err.Error(), "node: "))
	}
	if err != nil && ctx.Err() == nil {
		return toStatus(s.log, "ExportAudit", err)
	}
	return nil
}

func (s *adminService) VerifyPartnerAudit(ctx context.Context, req *adminv1.VerifyPartnerAuditRequest) (*adminv1.VerifyPartnerAuditResponse, error) {
	by, err := mustCaller(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.node.VerifyPartnerAudit(ctx, by, req.GetParty(), s.fetch)
	if errors.Is(err, node.ErrUnavailable) {
		return nil, status.Error(codes.Unavailable, strings.TrimPrefix(err.Error(), node.ErrUnavailable.Error()+": "))
	}
	if err != nil {
		return nil, toStatus(s.log, "VerifyPartnerAudit", err)
	}
	out := &adminv1.VerifyPartnerAuditResponse{Ok: r.OK, Party: req.GetParty(), Checkpoints: uint64(r.Checkpoints), PartnerEntries: r.PartnerEntries, LastGood: r.LastGood, Reason: r.Reason}
	if !r.OK {
		out.FirstBad, out.MismatchCheckpoint = &r.FirstBad, &r.Mismatch
	}
	return out, nil
}

func (s *adminService) WhoSaw(ctx context.Context, req *adminv1.WhoSawRequest) (*adminv1.WhoSawResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "a report id is required")
	}
	by, indexes, err := s.node.WhoSaw(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(s.log, "WhoSaw", err)
	}
	out := &adminv1.WhoSawResponse{Id: req.GetId()}
	for _, ix := range indexes {
		pr := &adminv1.PortionRecipients{Index: ix}
		for _, r := range by[ix] {
			rec := &adminv1.Recipient{Kind: r.Kind, Name: r.Name, Time: timestamppb.New(r.Time), Basis: r.Basis, Via: r.Via}
			if !r.Acknowledged.IsZero() {
				rec.Acknowledged = timestamppb.New(r.Acknowledged)
			}
			pr.Recipients = append(pr.Recipients, rec)
		}
		out.Portions = append(out.Portions, pr)
	}
	return out, nil
}

func (s *adminService) AuditSummary(ctx context.Context, req *adminv1.AuditSummaryRequest) (*adminv1.AuditSummaryResponse, error) {
	if req.GetPeriod() == nil || req.GetPeriod().CheckValid() != nil || req.GetPeriod().AsDuration() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "a positive period is required")
	}
	sums, from, to, err := s.node.AuditSummary(ctx, req.GetPeriod().AsDuration())
	if err != nil {
		return nil, toStatus(s.log, "AuditSummary", err)
	}
	out := &adminv1.AuditSummaryResponse{Party: s.node.Party(), From: timestamppb.New(from), To: timestamppb.New(to)}
	for _, p := range sums {
		out.Partners = append(out.Partners, &adminv1.PartnerSummary{
			Party: p.Party, ReportsReleased: p.ReportsReleased, ReportsDenied: p.ReportsDenied, DenialsByRule: p.DenialsByRule,
			ReportsReceived: p.ReportsReceived, ReportsRejected: p.ReportsRejected, ConsentsAsked: p.ConsentsAsked,
			ConsentsGranted: p.ConsentsGranted, WithdrawalsSent: p.WithdrawalsSent, WithdrawalsReceived: p.WithdrawalsReceived,
		})
	}
	return out, nil
}

// MetricsAddr is the address of the metrics endpoint ("" when none).
func (s *Server) MetricsAddr() string {
	if s.metrics == nil {
		return ""
	}
	return s.metrics.Addr().String()
}
