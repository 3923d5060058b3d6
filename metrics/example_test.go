package metrics_test

import (
	"fmt"
	"net/http"

	"github.com/treasure-home/cdc-broadcaster/metrics"
)

// A Metrics reads its sources at each scrape: here the gateway's counters
// and a fixed event log. The command wires the real components.
func ExampleNew() {
	m := metrics.New(metrics.Options{Version: "1.0.0"})
	m.Watch(metrics.Sources{
		Gateway: func() metrics.GatewayStats {
			return metrics.GatewayStats{ConnectionsActive: 2, ActiveByRole: map[string]int64{"teacher": 2}}
		},
		Log: func() metrics.LogStats { return metrics.LogStats{Events: 42} },
	})

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("/api/realtime/stats", metrics.StatsHandler(m.Snapshot, func(r *http.Request) (admin, ok bool) {
		return false, false // verify the bearer token here
	}))

	st := m.Snapshot()
	fmt.Println(st.Gateway.ConnectionsActive, st.EventLog.Events)
	// Output: 2 42
}
