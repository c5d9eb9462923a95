package queue

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	deliveriesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_queue_deliveries_total",
		Help: "Outbound delivery results per recipient: delivered, deferred, bounced, expired.",
	}, []string{"result"})
	dsnsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_queue_dsns_total",
		Help: "Delivery status notifications generated, by kind (failure, delay, success).",
	}, []string{"kind"})
)

// current is the running queue, read by the gauges below.
var current atomicQueue

var (
	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "postern_queue_entries",
		Help: "Recipients waiting in the outbound queue (including held ones).",
	}, func() float64 { n, _ := current.stats(); return float64(n) })
	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "postern_queue_oldest_seconds",
		Help: "Age of the oldest entry in the outbound queue.",
	}, func() float64 { _, age := current.stats(); return age.Seconds() })
)
