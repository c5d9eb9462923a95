package smtpd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connectionsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_smtp_connections_total",
		Help: "SMTP connections accepted (including those refused for limits).",
	})
	connectionsActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "postern_smtp_connections_active",
		Help: "SMTP connections open now.",
	})
	messagesAccepted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_smtp_messages_accepted_total",
		Help: "Messages acknowledged with 250 after a durable commit.",
	})
	messagesRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_smtp_rejected_total",
		Help: "Refused connections, recipients and messages, by reason.",
	}, []string{"reason"})
	authFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_smtp_auth_failures_total",
		Help: "Failed SMTP AUTH attempts on the submission listeners.",
	})
	bytesReceived = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_smtp_bytes_received_total",
		Help: "Message bytes received in accepted messages.",
	})
)

// Rejection reasons, the label values of postern_smtp_rejected_total.
const (
	reasonUnknownUser    = "unknown_user"
	reasonRelayDenied    = "relay_denied"
	reasonTooBig         = "too_big"
	reasonTooManyRcpts   = "too_many_recipients"
	reasonBareLineEnd    = "bare_line_end"
	reasonNUL            = "nul_character"
	reasonBadFrom        = "bad_from_header"
	reasonLineTooLong    = "line_too_long"
	reasonAuthRequired   = "auth_required"
	reasonSenderNotOwned = "sender_not_owned"
	reasonLoop           = "mail_loop"
	reasonProbing        = "recipient_probing"
	reasonBadAddress     = "bad_address"
	reasonTempFailure    = "temporary_failure"
	reasonTooManyConns   = "too_many_connections"
	reasonTooManyPerIP   = "too_many_connections_per_ip"
	reasonDataIncomplete = "data_incomplete"
	reasonAuthFailed     = "sender_auth_failed"
)

func init() {
	for _, r := range []string{reasonUnknownUser, reasonRelayDenied, reasonTooBig, reasonTooManyRcpts, reasonBareLineEnd, reasonNUL, reasonBadFrom, reasonLineTooLong, reasonAuthRequired, reasonSenderNotOwned, reasonLoop, reasonProbing,
		reasonBadAddress, reasonTempFailure, reasonTooManyConns, reasonTooManyPerIP, reasonDataIncomplete} {
		messagesRejected.WithLabelValues(r)
	}
}
