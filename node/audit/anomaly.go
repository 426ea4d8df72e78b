package audit

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	storev1 "github.com/tearline/tearline/proto/tearline/store/v1"
)

// Anomaly kinds: the security events the detector and the verifiers raise.
const (
	AnomalyDeliveryRate   = "anomaly-delivery-rate"
	AnomalyDenials        = "anomaly-repeated-denials"
	AnomalyChain          = "audit-chain-broken"
	AnomalyPartnerChain   = "partner-audit-mismatch"
	AnomalyPartnerFork    = "partner-audit-fork"
	anomalyHistoryWindows = 3
)

// DetailAtPublication is the detail of the "refused" event an originator
// records, as it publishes, for a partner its markings leave out. That is
// the originator's own choice, not an act concerning the partner, and not
// counted as a denial (DenialsPerPartner): only refused shares, forwards
// and relays are, and security events naming the partner.
const DetailAtPublication = "at publication"

// Thresholds configure the anomaly detector.
type Thresholds struct {
	// A subscriber's deliveries in one DeliveryWindow raise an alert when
	// they are at least DeliveryMin and more than DeliveryFactor times its
	// own baseline (a moving average of its earlier windows; at least 3
	// windows of history are needed).
	DeliveryWindow time.Duration
	DeliveryFactor float64
	DeliveryMin    int
	// DenialsPerPartner denials concerning one partner within DenialWindow
	// raise an alert: releases to it refused (other than at publication,
	// DetailAtPublication), and security events naming it.
	DenialWindow      time.Duration
	DenialsPerPartner int
}

// DefaultThresholds are the thresholds when the configuration sets none.
var DefaultThresholds = Thresholds{
	DeliveryWindow: time.Minute, DeliveryFactor: 10, DeliveryMin: 200,
	DenialWindow: 10 * time.Minute, DenialsPerPartner: 20,
}

// Alert is an anomaly to raise as a security event.
type Alert struct {
	Kind    string
	Partner string // the partner concerned, if any
	Message string
}

type rate struct {
	start    time.Time
	count    int
	baseline float64
	windows  int
	alerted  bool
}

// Detector watches committed audit entries for anomalies. It is safe for
// concurrent use.
type Detector struct {
	th      Thresholds
	mu      sync.Mutex
	subs    map[string]*rate
	denials map[string][]time.Time
}

// NewDetector returns a detector with th (zero fields take the defaults).
func NewDetector(th Thresholds) *Detector {
	d := DefaultThresholds
	if th.DeliveryWindow > 0 {
		d.DeliveryWindow = th.DeliveryWindow
	}
	if th.DeliveryFactor > 0 {
		d.DeliveryFactor = th.DeliveryFactor
	}
	if th.DeliveryMin > 0 {
		d.DeliveryMin = th.DeliveryMin
	}
	if th.DenialWindow > 0 {
		d.DenialWindow = th.DenialWindow
	}
	if th.DenialsPerPartner > 0 {
		d.DenialsPerPartner = th.DenialsPerPartner
	}
	return &Detector{th: d, subs: map[string]*rate{}, denials: map[string][]time.Time{}}
}

// Observe takes the entries of one commit, made at now, and returns the
// alerts they raise.
func (d *Detector) Observe(now time.Time, entries []*storev1.AuditEntry) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Alert
	for _, e := range entries {
		switch k := e.GetKind(); {
		case k == "deliveries":
			n := 0
			for _, x := range e.GetDeliveries() {
				if x.GetKind() == "delivered" {
					n++
				}
			}
			if a, ok := d.delivered(now, e.GetSubject(), n); ok {
				out = append(out, a)
			}
		case (k == "refused" && e.GetDetail() != DetailAtPublication) || (strings.HasPrefix(k, "security:") && !isAnomaly(strings.TrimPrefix(k, "security:"))):
			if e.GetParty() == "" {
				continue
			}
			if a, ok := d.denied(now, e.GetParty()); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

func isAnomaly(kind string) bool {
	switch kind {
	case AnomalyDeliveryRate, AnomalyDenials, AnomalyChain, AnomalyPartnerChain, AnomalyPartnerFork:
		return true
	}
	return false
}

func (d *Detector) delivered(now time.Time, sub string, n int) (Alert, bool) {
	r, ok := d.subs[sub]
	if !ok {
		r = &rate{start: now}
		d.subs[sub] = r
	}
	if w := d.th.DeliveryWindow; now.Sub(r.start) >= w {
		k := int(now.Sub(r.start) / w)
		for i := 0; i < min(k, 60); i++ {
			c := float64(r.count)
			if i > 0 {
				c = 0
			}
			if r.windows == 0 {
				r.baseline = c
			} else {
				r.baseline = 0.7*r.baseline + 0.3*c
			}
			r.windows++
		}
		r.start = r.start.Add(time.Duration(k) * w)
		r.count, r.alerted = 0, false
	}
	r.count += n
	if r.alerted || r.windows < anomalyHistoryWindows || r.count < d.th.DeliveryMin {
		return Alert{}, false
	}
	if float64(r.count) <= d.th.DeliveryFactor*max(r.baseline, 1) {
		return Alert{}, false
	}
	r.alerted = true
	return Alert{Kind: AnomalyDeliveryRate, Message: fmt.Sprintf("subscriber %s received %d reports in under %s, more than %g times its baseline of %.1f per %s",
		sub, r.count, d.th.DeliveryWindow, d.th.DeliveryFactor, r.baseline, d.th.DeliveryWindow)}, true
}

func (d *Detector) denied(now time.Time, party string) (Alert, bool) {
	ts := d.denials[party]
	cut := now.Add(-d.th.DenialWindow)
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = append(ts[i:], now)
	if len(ts) < d.th.DenialsPerPartner {
		d.denials[party] = ts
		return Alert{}, false
	}
	delete(d.denials, party) // re-armed: the next alert needs as many again
	return Alert{Kind: AnomalyDenials, Partner: party, Message: fmt.Sprintf("%d denials concerning %s within %s (refused releases and security events)",
		len(ts), party, d.th.DenialWindow)}, true
}

// Metrics counts anomalies by kind, for the node's metrics endpoint. It is
// safe for concurrent use.
type Metrics struct {
	mu     sync.Mutex
	counts map[string]uint64
}

// Inc counts one anomaly of kind.
func (m *Metrics) Inc(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[string]uint64{}
	}
	m.counts[kind]++
}

// Counts returns the counts so far, every known kind included.
func (m *Metrics) Counts() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]uint64{AnomalyDeliveryRate: 0, AnomalyDenials: 0, AnomalyChain: 0, AnomalyPartnerChain: 0, AnomalyPartnerFork: 0}
	maps.Copy(out, m.counts)
	return out
}
