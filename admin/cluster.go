//go:build linux

package admin

import (
	"net/http"

	"github.com/stickylb/stickylb/cluster"
)

// ClusterStatus is GET /api/cluster, for ctl members and the dashboard.
type ClusterStatus struct {
	Enabled   bool                 `json:"enabled"`
	Self      string               `json:"self,omitempty"`
	Synced    bool                 `json:"synced"`
	Members   []cluster.MemberInfo `json:"members"`
	Sent      uint64               `json:"pin_records_sent"`
	Received  uint64               `json:"pin_records_received"`
	Conflicts uint64               `json:"conflicts"`
	LeftOpen  uint64               `json:"connections_left_on_losing_backend"`
	Syncs     uint64               `json:"syncs"`
	Failures  uint64               `json:"send_failures"`
}

func (a *API) clusterStatus(w http.ResponseWriter, r *http.Request) {
	m := a.opts.Server.Cluster()
	if m == nil {
		writeJSON(w, 200, ClusterStatus{Members: []cluster.MemberInfo{}})
		return
	}
	st := m.Stats()
	writeJSON(w, 200, ClusterStatus{Enabled: true, Self: m.Name(), Synced: m.Synced(), Members: m.Members(),
		Sent: st.Sent.Load(), Received: st.Received.Load(), Conflicts: st.Conflicts.Load(), LeftOpen: st.LeftOpen.Load(),
		Syncs: st.Syncs.Load(), Failures: st.SendFailures.Load()})
}
