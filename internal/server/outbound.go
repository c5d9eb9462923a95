package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/courier"
	"github.com/postern-mail/postern/internal/dnsx"
	"github.com/postern-mail/postern/internal/msgauth"
	"github.com/postern-mail/postern/internal/queue"
	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// courierTransport lets the queue deliver through the courier.
type courierTransport struct {
	c    *courier.Courier
	dkim *msgauth.Signer // nil: no signing
	log  *slog.Logger
	sigs *signatures // shares a message's signing among its domains; may be nil
}

// maxInMemory is the largest message read into memory at its first attempt,
// to be signed and sent from one read.
const maxInMemory = 1 << 20

func (t courierTransport) Deliver(ctx context.Context, domain string, env queue.Envelope, open func() (io.ReadCloser, error)) queue.Attempt {
	var signed bool
	sigs := env.Signature
	// Kept signatures whose key was retired since (dkim-rotate --retire)
	// would no longer verify: sign anew.
	stale := t.dkim != nil && env.SignatureDone && sigs != "" && !t.dkim.Published(sigs)
	if stale {
		t.log.Info("kept DKIM signature's key retired, signing again", "qid", env.QueueID)
	}
	if t.dkim != nil && (!env.SignatureDone || stale) {
		// Messages are stored once, unsigned, and signed once: at their
		// first attempt, for all their domains; the queue keeps the
		// fields for the retries. A small message is read once, for
		// signing and sending both.
		var err error
		if env.Size > 0 && env.Size <= maxInMemory {
			var msg []byte
			if msg, err = readAll(open, env.Size); err == nil {
				open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(msg)), nil }
			}
		}
		if err == nil {
			sign := func() (string, error) { return t.sign(ctx, env.From, open) }
			if t.sigs != nil && env.QueueID != "" && !stale {
				sigs, err = t.sigs.get(env.QueueID, sign)
			} else {
				sigs, err = sign()
			}
		}
		if err != nil {
			t.log.Error("dkim signing failed", "from", env.From, "err", err)
			return failAll(env, 451, "4.3.0", "DKIM signing failed, will retry")
		}
		signed = true
	}
	if sigs != "" {
		// The fields go in front of the message as it is read (the
		// courier may read it more than once).
		inner := open
		open = func() (io.ReadCloser, error) {
			rc, err := inner()
			if err != nil {
				return nil, err
			}
			return prefixed{io.MultiReader(strings.NewReader(sigs), rc), rc}, nil
		}
		env.Size += int64(len(sigs))
	}
	utf8 := !isASCII(env.From)
	for _, r := range env.Recipients {
		utf8 = utf8 || !isASCII(r)
	}
	cenv := courier.Envelope{From: env.From, Recipients: env.Recipients, Size: env.Size, UTF8: utf8, Ret: env.Ret, EnvID: env.EnvID}
	for i := range env.Recipients {
		cenv.DSN = append(cenv.DSN, courier.RcptDSN{Notify: env.Notify[i], ORcpt: env.ORcpt[i]})
	}
	att := t.c.Deliver(ctx, domain, cenv, open)
	out := queue.Attempt{Host: att.Host, IP: att.IP, TLS: att.TLS, RemoteDSN: att.DSN, Signature: sigs, Signed: signed}
	for _, r := range att.Results {
		out.Results = append(out.Results, queue.Result{Recipient: r.Recipient, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text})
	}
	return out
}

// readAll reads the stored message of size bytes.
func readAll(open func() (io.ReadCloser, error), size int64) ([]byte, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	_, err = buf.ReadFrom(rc)
	return buf.Bytes(), err
}

// sign returns the DKIM-Signature fields for the stored message.
func (t courierTransport) sign(ctx context.Context, from string, open func() (io.ReadCloser, error)) (string, error) {
	rc, err := open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return t.dkim.Sign(ctx, from, rc)
}

// prefixed reads the signatures, then the message, and closes the message.
type prefixed struct {
	io.Reader
	io.Closer
}

// failAll is an attempt that failed before any connection, for every
// recipient alike.
func failAll(env queue.Envelope, code int, enhanced, text string) queue.Attempt {
	var att queue.Attempt
	for _, r := range env.Recipients {
		att.Results = append(att.Results, queue.Result{Recipient: r, Code: code, Enhanced: enhanced, Text: text})
	}
	return att
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// DKIMDir is where the DKIM keys of the hosted domains are kept.
func DKIMDir(dataDir string) string { return filepath.Join(dataDir, "dkim") }

// outbound is the sending side: the submission listeners and the queue.
type outbound struct {
	srv     *smtpd.Server
	courier *courier.Courier
	cancel  context.CancelFunc
	done    chan struct{}
}

// startOutbound starts the queue runner and the submission listeners (587
// with STARTTLS, 465 with implicit TLS).
func startOutbound(cfg *config.Config, st *sqlite.Store, tlsConfig *tls.Config, throttle *auth.Throttle, log *slog.Logger,
	listen func(string) (net.Listener, error), wg *sync.WaitGroup, errc chan<- error, out io.Writer) (*outbound, error) {
	o := &outbound{done: make(chan struct{})}
	o.courier = courier.New(courier.Config{
		Hostname:       cfg.Hostname,
		Resolver:       dnsx.New(cfg.DNS.Resolver, 10*time.Second),
		MXPort:         cfg.Delivery.MXPort,
		RelayHost:      cfg.Delivery.RelayHost,
		RelayUser:      cfg.Delivery.RelayUser,
		RelayPassword:  cfg.Delivery.RelayPassword,
		ConnectTimeout: 30 * time.Second,
		CommandTimeout: cfg.Limits.CommandTimeout.Duration,
		MaxPerDomain:   10,
		// Every delivery in flight may go to one host (the benchmark's
		// sink, a big provider's MX): keep as many idle as may run.
		MaxIdlePerHost: cfg.Queue.Concurrency,
		Logger:         log.With("svc", "courier"),
	})
	signer := &msgauth.Signer{Keys: msgauth.NewKeyStore(DKIMDir(cfg.DataDir)), IsLocal: st.HasDomain, Hostname: cfg.Hostname}
	var retry []time.Duration
	for _, d := range cfg.Queue.Retry {
		retry = append(retry, d.Duration)
	}
	q := queue.New(queue.Config{
		Hostname:     cfg.Hostname,
		Retry:        retry,
		MaxLifetime:  cfg.Queue.MaxLifetime.Duration,
		DelayWarning: cfg.Queue.DelayWarning.Duration,
		Concurrency:  cfg.Queue.Concurrency,
		Logger:       log.With("svc", "queue"),
	}, st, st, courierTransport{c: o.courier, dkim: signer, log: log.With("svc", "dkim"), sigs: &signatures{}})
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	go func() {
		defer close(o.done)
		q.Run(ctx)
	}()

	o.srv = smtpd.New(smtpd.Config{
		Hostname:            cfg.Hostname,
		TLS:                 tlsConfig,
		MaxMessageBytes:     int64(cfg.Limits.MaxMessageSize),
		MaxRecipients:       cfg.Limits.MaxRecipients,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		MaxLineLength:       cfg.Limits.MaxLineLength,
		CommandTimeout:      cfg.Limits.CommandTimeout.Duration,
		DataTimeout:         cfg.Limits.DataTimeout.Duration,
		Logger:              log.With("svc", "submission"),
		Submission:          true,
		Throttle:            throttle,
		AuthFailDelay:       cfg.Limits.AuthFailDelay.Duration,
		DisableVRFY:         !cfg.Limits.VRFY,
		LocalIPLiterals:     localIPLiterals(cfg),
		MaxReceived:         cfg.Limits.MaxReceivedHeaders,
	}, st)
	for _, svc := range []struct {
		name     string
		addrs    []string
		implicit bool
	}{{"submission", cfg.Listen.Submission, false}, {"submissions", cfg.Listen.Submissions, true}} {
		for _, addr := range svc.addrs {
			l, err := listen(addr)
			if err != nil {
				o.stop(context.Background())
				return nil, err
			}
			log.Info("listening", "svc", svc.name, "addr", l.Addr().String())
			fmt.Fprintf(out, "%s listening on %s\n", svc.name, l.Addr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve := o.srv.Serve
				if svc.implicit {
					serve = func(l net.Listener) error { return o.srv.ServeTLS(l, tlsConfig) }
				}
				if err := serve(l); err != nil {
					errc <- fmt.Errorf("%s %s: %w", svc.name, l.Addr(), err)
				}
			}()
		}
	}
	return o, nil
}

// stop ends submission sessions (within ctx) and the queue runner, waiting
// for deliveries in flight.
func (o *outbound) stop(ctx context.Context) {
	if o.srv != nil {
		o.srv.Shutdown(ctx)
	}
	o.cancel()
	<-o.done
	o.courier.Close()
}
