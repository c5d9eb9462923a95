package pop3d

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connectionsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_connections_total",
		Help: "POP3 connections accepted (including those refused for limits).",
	})
	connectionsActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "postern_pop3_connections_active",
		Help: "POP3 connections open now.",
	})
	connectionsRefused = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_connections_refused_total",
		Help: "POP3 connections refused for the connection limits.",
	})
	logins = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_pop3_logins_total",
		Help: "POP3 login attempts by result: ok, failed (bad credentials), refused (IP in its cool-down after too many failures; connections too), in_use, error.",
	}, []string{"result"})
	messagesRetrieved = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_messages_retrieved_total",
		Help: "Messages sent in full by RETR.",
	})
	messagesDeleted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_messages_deleted_total",
		Help: "Messages expunged in the UPDATE state after QUIT.",
	})
	sessionsDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_sessions_dropped_total",
		Help: "Logged-in POP3 sessions that ended without QUIT (nothing deleted).",
	})
	panics = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_pop3_panics_total",
		Help: "POP3 sessions ended by a recovered panic (a bug; see the log).",
	})
)
