// Package server wires Postern's services together: it opens the store,
// starts every configured listener, serves /healthz and /metrics, and shuts
// everything down in order on a signal.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/config"
	"github.com/postern-mail/postern/internal/imapd"
	"github.com/postern-mail/postern/internal/pop3d"
	"github.com/postern-mail/postern/internal/smtpd"
	"github.com/postern-mail/postern/internal/store"
	"github.com/postern-mail/postern/internal/store/sqlite"
)

// DevDomain and DevUser are created on the first start in development mode.
const (
	DevDomain = "example.test"
	DevUser   = "dev@example.test"
)

// Run serves until ctx is cancelled, then shuts down gracefully. Messages
// meant for the operator (the dev password, listening addresses) go to out.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, out io.Writer) error {
	st, err := sqlite.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if cfg.Dev {
		if err := devBootstrap(ctx, st, out); err != nil {
			return err
		}
	}
	tlsConfig, err := LoadTLS(cfg.TLS.Cert, cfg.TLS.Key, cfg.DataDir, cfg.Hostname)
	if err != nil {
		return err
	}

	smtpSrv := smtpd.New(smtpd.Config{
		Hostname:            cfg.Hostname,
		TLS:                 tlsConfig,
		MaxMessageBytes:     int64(cfg.Limits.MaxMessageSize),
		MaxRecipients:       cfg.Limits.MaxRecipients,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		MaxLineLength:       cfg.Limits.MaxLineLength,
		CommandTimeout:      cfg.Limits.CommandTimeout.Duration,
		DataTimeout:         cfg.Limits.DataTimeout.Duration,
		Logger:              log.With("svc", "smtp"),
		Checker:             newSenderChecker(cfg),

		UnknownRcptDelayAfter: cfg.Limits.RcptUnknownDelayAfter,
		UnknownRcptDelay:      cfg.Limits.RcptUnknownDelay.Duration,
		UnknownRcptMax:        cfg.Limits.RcptUnknownMax,
		UnknownRcptPerIP:      cfg.Limits.RcptUnknownPerIP,
		UnknownRcptWindow:     cfg.Limits.RcptUnknownWindow.Duration,
		UnknownRcptCooldown:   cfg.Limits.RcptUnknownCooldown.Duration,
		RcptJitter:            cfg.Limits.RcptJitter.Duration,
		DisableVRFY:           !cfg.Limits.VRFY,
		LocalIPLiterals:       localIPLiterals(cfg),
		MaxReceived:           cfg.Limits.MaxReceivedHeaders,
	}, st)

	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	listen := func(addr string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		listeners = append(listeners, l)
		return l, nil
	}

	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for _, addr := range cfg.Listen.SMTP {
		l, err := listen(addr)
		if err != nil {
			return err
		}
		log.Info("listening", "svc", "smtp", "addr", l.Addr().String())
		fmt.Fprintf(out, "smtp listening on %s\n", l.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := smtpSrv.Serve(l); err != nil {
				errc <- fmt.Errorf("smtp %s: %w", l.Addr(), err)
			}
		}()
	}

	throttle := newThrottle(cfg.Limits) // failed logins, shared by SMTP AUTH, IMAP and POP3
	ob, err := startOutbound(cfg, st, tlsConfig, throttle, log, listen, &wg, errc, out)
	if err != nil {
		return err
	}
	imapSrv := imapd.New(imapd.Config{
		TLS:                 tlsConfig,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		MaxMessageBytes:     int64(cfg.Limits.MaxMessageSize),
		MaxLineLength:       int64(cfg.Limits.IMAPMaxLineLength),
		MaxLiteralSize:      int64(cfg.Limits.IMAPMaxLiteralSize),
		IdleTimeout:         cfg.Limits.IMAPIdleTimeout.Duration,
		FailedLoginDelay:    cfg.Limits.AuthFailDelay.Duration,
		Throttle:            throttle,
		Logins:              auth.NewCache(10000, 5*time.Minute), // recent good passwords: no argon2id per poll
		Logger:              log.With("svc", "imap"),
	}, st)
	pop3Srv := pop3d.New(pop3d.Config{
		TLS:                 tlsConfig,
		MaxConnections:      cfg.Limits.MaxConnections,
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		IdleTimeout:         cfg.Limits.POP3IdleTimeout.Duration,
		FailedLoginDelay:    cfg.Limits.AuthFailDelay.Duration,
		Throttle:            throttle,
		Logger:              log.With("svc", "pop3"),
	}, st)
	for _, svc := range []struct {
		name  string
		addrs []string
		serve func(net.Listener) error
	}{
		{"imap", cfg.Listen.IMAP, imapSrv.Serve}, {"imaps", cfg.Listen.IMAPS, imapSrv.ServeTLS},
		{"pop3", cfg.Listen.POP3, pop3Srv.Serve}, {"pop3s", cfg.Listen.POP3S, pop3Srv.ServeTLS},
	} {
		for _, addr := range svc.addrs {
			l, err := listen(addr)
			if err != nil {
				return err
			}
			log.Info("listening", "svc", svc.name, "addr", l.Addr().String())
			fmt.Fprintf(out, "%s listening on %s\n", svc.name, l.Addr())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := svc.serve(l); err != nil && !errors.Is(err, pop3d.ErrServerClosed) {
					errc <- fmt.Errorf("%s %s: %w", svc.name, l.Addr(), err)
				}
			}()
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := st.HasDomain(cctx, "healthz.invalid"); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	for _, addr := range cfg.Listen.Admin {
		l, err := listen(addr)
		if err != nil {
			return err
		}
		log.Info("listening", "svc", "admin", "addr", l.Addr().String())
		fmt.Fprintf(out, "admin listening on %s\n", l.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin %s: %w", l.Addr(), err)
			}
		}()
	}
	log.Info("postern started", "hostname", cfg.Hostname, "data_dir", cfg.DataDir)
	fmt.Fprintln(out, "postern ready")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.Limits.ShutdownGrace.Duration.String())
	case runErr = <-errc:
		log.Error("listener failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownGrace.Duration)
	defer cancel()
	smtpSrv.Shutdown(sctx)
	ob.stop(sctx)
	httpSrv.Shutdown(sctx)
	closeAll()
	imapSrv.Close()
	pop3Srv.Close()
	wg.Wait()
	if err := st.Close(); err != nil && runErr == nil {
		runErr = err
	}
	log.Info("postern stopped")
	return runErr
}

// devBootstrap creates the development domain and user on the first start
// and prints the user's password once.
func devBootstrap(ctx context.Context, st store.Store, out io.Writer) error {
	domains, err := st.Domains(ctx)
	if err != nil {
		return err
	}
	if len(domains) > 0 {
		return nil
	}
	if err := st.AddDomain(ctx, DevDomain); err != nil {
		return err
	}
	pw := auth.RandomPassword()
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	if _, err := st.AddUser(ctx, DevUser, hash); err != nil {
		return err
	}
	fmt.Fprintf(out, "created domain %s and user %s with password: %s\n", DevDomain, DevUser, pw)
	return nil
}

// newThrottle is the failed-login throttle of the [limits] auth_* keys.
func newThrottle(l config.Limits) *auth.Throttle {
	return &auth.Throttle{
		MaxPerIP: l.AuthMaxFailures, Window: l.AuthWindow.Duration, Cooldown: l.AuthCooldown.Duration,
		DelayAfter: l.AuthDelayAfter, DelayStep: l.AuthDelayStep.Duration, MaxDelay: l.AuthMaxDelay.Duration,
	}
}

// localIPLiterals parses [limits] local_ip_literals (checked by config).
func localIPLiterals(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, a := range cfg.Limits.LocalIPLiterals {
		if ip, err := netip.ParseAddr(a); err == nil {
			out = append(out, ip)
		}
	}
	return out
}
