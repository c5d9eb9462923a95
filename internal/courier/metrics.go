package courier

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connectionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_courier_connections_total",
		Help: "Outbound SMTP connections opened, by whether STARTTLS was used.",
	}, []string{"tls"})
	connectionsReused = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_courier_connections_reused_total",
		Help: "Outbound deliveries that reused an idle connection.",
	})
	tlsFallbacks = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_courier_tls_fallbacks_total",
		Help: "Failed STARTTLS handshakes followed by a plaintext delivery attempt.",
	})
	connectFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_courier_connect_failures_total",
		Help: "Outbound connections that failed or were refused at the greeting or EHLO.",
	})
)
