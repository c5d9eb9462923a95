package dnsx

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var cacheLookups = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "postern_dns_cache_lookups_total",
	Help: "MX, A and AAAA queries to the configured DNS server by how the cache answered: hit (a kept response), " +
		"shared (waited for the same query in flight), miss (asked the server).",
}, []string{"result"})
