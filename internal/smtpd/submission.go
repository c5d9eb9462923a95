package smtpd

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern-mail/postern/internal/auth"
	"github.com/postern-mail/postern/internal/store"
)

// submissionSession is a session on the submission listeners (587 with
// STARTTLS, 465 with implicit TLS): AUTH is offered (only under TLS, which
// go-smtp enforces by not advertising it before), required before MAIL,
// and an authenticated user may send to any domain from its own addresses.
type submissionSession struct {
	*session
}

var (
	errAuthRequired = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errAuthFailed   = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	// errAuthRefused: RFC 4954 6's temporary failure, for an IP in its
	// cool-down; it says nothing about the account.
	errAuthRefused = smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins from your address, try again later")
)

// AuthMechanisms lists the SASL mechanisms offered (RFC 4954).
func (ss *submissionSession) AuthMechanisms() []string {
	return []string{sasl.Plain, sasl.Login}
}

// Auth returns the SASL server for a mechanism.
func (ss *submissionSession) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && !strings.EqualFold(identity, username) {
				return errAuthFailed // no proxy authorization
			}
			return ss.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: ss.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks a password. Unknown users and wrong passwords get the same
// answer after the same kind of delay. An IP in its cool-down after too
// many failures (auth.Throttle) gets 454 4.7.0 without a password check;
// its new connections are refused with 421 (refuseListener).
func (ss *submissionSession) login(username, password string) error {
	th := ss.s.cfg.Throttle
	username = strings.ToLower(strings.TrimSpace(username))
	if th != nil {
		defer th.Acquire(ss.ip)() // one login of this IP at a time, waits included
		if th.Refused(ss.ip) {
			authRefused.Inc()
			ss.log.Warn("authentication refused: too many failures from this IP", "user", username)
			return errAuthRefused
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// After repeated failures of this IP or account every attempt waits
	// the throttle's growing delay before its answer, right or wrong.
	var wait time.Duration
	if th != nil {
		wait = th.Delay(ss.ip, username)
	}
	fail := func() error {
		d := ss.s.cfg.AuthFailDelay
		if th != nil {
			if th.Failed(ss.ip, username, password) {
				ss.log.Warn("too many failed logins: refusing this IP for the cool-down")
			}
			d = th.FailWait(d, ss.ip, username)
		} else if d > 0 {
			d += time.Duration(rand.Int63n(int64(d)/2 + 1))
		}
		authFailures.Inc()
		ss.pause(max(d, wait))
		ss.log.Info("authentication failed", "user", username)
		return errAuthFailed
	}
	u, err := ss.s.be.UserByAddress(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		auth.CheckPassword(dummyHash, password) // same cost as a real check
		return fail()
	}
	if err != nil {
		ss.log.Error("user lookup failed", "err", err)
		return smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure")
	}
	ok, err := auth.CheckPassword(u.PasswordHash, password)
	if err != nil || !ok {
		return fail()
	}
	if th != nil {
		th.Succeeded(ss.ip, username)
	}
	ss.pause(wait)
	ss.mu.Lock()
	ss.user = &u
	ss.mu.Unlock()
	ss.log = ss.log.With("user", u.Address)
	ss.log.Info("authenticated")
	return nil
}

// dummyHash is checked for unknown users so that they cost as much time as
// a wrong password for a real one.
var dummyHash = func() string {
	h, err := auth.HashPassword(auth.RandomPassword())
	if err != nil {
		panic(err)
	}
	return h
}()

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:", then "Password:".
type loginServer struct {
	check    func(user, pass string) error
	step     int
	username string
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // initial response carries the user name
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.username, string(response))
	}
	return nil, false, errors.New("unexpected response")
}

// senderAllowed reports whether the authenticated user may use from as
// envelope sender: one of its own addresses (with +detail), or an alias
// that delivers to it.
func (ss *session) senderAllowed(ctx context.Context, u *store.User, from string) (bool, error) {
	_, domain, ok := splitAddr(from)
	if !ok {
		return false, nil
	}
	if strings.EqualFold(from, u.Address) {
		return true, nil
	}
	local, err := ss.s.be.HasDomain(ctx, domain)
	if err != nil || !local {
		return false, err
	}
	users, err := ss.s.be.ResolveLocal(ctx, from)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, x := range users {
		if x.ID == u.ID {
			return true, nil
		}
	}
	return false, nil
}
