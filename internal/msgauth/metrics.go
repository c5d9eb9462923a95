package msgauth

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	checkResults = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_msgauth_results_total",
		Help: "Sender authentication results of inbound messages, by method (spf, dkim, dmarc) and result (RFC 8601).",
	}, []string{"method", "result"})
	checkVerdicts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_msgauth_verdicts_total",
		Help: "What sender authentication decided for inbound messages: accept, junk, reject, tempfail or skipped.",
	}, []string{"verdict"})
	dkimSigned = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postern_dkim_signed_total",
		Help: "Outbound delivery attempts whose message was DKIM-signed.",
	})
)

// count records the results of one checked message.
func count(res *Result) {
	if res.Skipped {
		checkVerdicts.WithLabelValues("skipped").Inc()
		return
	}
	checkVerdicts.WithLabelValues(res.Verdict.String()).Inc()
	checkResults.WithLabelValues("spf", string(res.SPF.Result)).Inc()
	if len(res.DKIM) == 0 {
		checkResults.WithLabelValues("dkim", "none").Inc()
	}
	for _, d := range res.DKIM {
		checkResults.WithLabelValues("dkim", d.Result).Inc()
	}
	checkResults.WithLabelValues("dmarc", res.DMARC.Result).Inc()
}
