//go:build linux

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stickylb/stickylb/cluster"
)

// The cluster's series, read at scrape time from the member's totals.
// They exist only on a cluster member, and then from the first scrape.
var (
	descMembers   = prometheus.NewDesc(ns+"_cluster_members", "Cluster members this member has known, by state (alive, failed, left), itself included.", []string{"state"}, nil)
	descSynced    = prometheus.NewDesc(ns+"_cluster_synced", "1 once this member has taken a whole table from a peer (or gave up waiting after sync_timeout).", nil, nil)
	descPinRecs   = prometheus.NewDesc(ns+"_cluster_pin_records_total", "Pin records sent (counted once per member reached) and received.", []string{"direction"}, nil)
	descMsgBytes  = prometheus.NewDesc(ns+"_cluster_bytes_total", "Bytes of cluster messages, by kind (changes: batches as pins change; table: whole-table syncs) and direction.", []string{"kind", "direction"}, nil)
	descSyncs     = prometheus.NewDesc(ns+"_cluster_syncs_total", "Whole tables taken from peers and merged.", nil, nil)
	descConflicts = prometheus.NewDesc(ns+"_cluster_conflicts_total", "Records that decided a client otherwise than this member had; the newer decision won.", nil, nil)
	descLeftOpen  = prometheus.NewDesc(ns+"_cluster_connections_left_open_total", "Connections left open on a backend that lost a conflict (not cut; the client's next connection goes to the winner).", nil, nil)
	descTrouble   = prometheus.NewDesc(ns+"_cluster_problems_total", "Cluster problems, by kind: send_failed (a member did not take a batch), dropped (send queue full), malformed (message refused), unknown (record of a pool or backend this member lacks, or keyed otherwise), future (record stamped over a minute ahead of this member's clock), streams_refused (gossip TCP streams over 64 at once), throttled (a member's messages over its share, dropped), strangers (messages from a sender the roster does not know: nothing kept for it), left_out (records, decisions or close requests a message could not carry).", []string{"kind"}, nil)
	descDelay     = prometheus.NewDesc(ns+"_cluster_convergence_delay_seconds", "From a decision at another member to its pin changing here.", nil, nil)
)

var clusterDescs = []*prometheus.Desc{descMembers, descSynced, descPinRecs, descMsgBytes, descSyncs, descConflicts, descLeftOpen, descTrouble, descDelay}

var memberStates = []string{"alive", "failed", "left"}

func collectCluster(ch chan<- prometheus.Metric, m *cluster.Member) {
	counts := map[string]int{}
	for _, mi := range m.Members() {
		counts[mi.State]++
	}
	for _, st := range memberStates {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(counts[st]), st)
	}
	synced := 0.0
	if m.Synced() {
		synced = 1
	}
	ch <- prometheus.MustNewConstMetric(descSynced, prometheus.GaugeValue, synced)
	s := m.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descPinRecs, s.Sent.Load(), "sent")
	counter(descPinRecs, s.Received.Load(), "received")
	counter(descMsgBytes, s.BytesSent.Load(), "changes", "sent")
	counter(descMsgBytes, s.BytesReceived.Load(), "changes", "received")
	counter(descMsgBytes, s.SyncBytesSent.Load(), "table", "sent")
	counter(descMsgBytes, s.SyncBytesReceived.Load(), "table", "received")
	counter(descSyncs, s.Syncs.Load())
	counter(descConflicts, s.Conflicts.Load())
	counter(descLeftOpen, s.LeftOpen.Load())
	counter(descTrouble, s.SendFailures.Load(), "send_failed")
	counter(descTrouble, s.Dropped.Load(), "dropped")
	counter(descTrouble, s.Malformed.Load(), "malformed")
	counter(descTrouble, s.Unknown.Load(), "unknown")
	counter(descTrouble, s.Future.Load(), "future")
	counter(descTrouble, s.StreamsRefused.Load(), "streams_refused")
	counter(descTrouble, s.Throttled.Load(), "throttled")
	counter(descTrouble, s.Strangers.Load(), "strangers")
	counter(descTrouble, s.LeftOut.Load(), "left_out")
	cum, n, sum := s.Delays()
	buckets := map[float64]uint64{}
	for i, b := range cluster.DelayBuckets {
		buckets[b.Seconds()] = cum[i]
	}
	ch <- prometheus.MustNewConstHistogram(descDelay, n, sum, buckets)
}
