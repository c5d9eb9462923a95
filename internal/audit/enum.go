package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Enumeration, in the order it runs:
//
//  1. Baseline: each candidate method is asked about two random local
//     parts (and postmaster, which must exist). A method whose answer to a
//     random name is a permanent refusal tells users apart; one that
//     accepts a random name means a catch-all (and no user is ever
//     reported); a 4xx means greylisting or throttling; 252 or 502 mean
//     the method says nothing.
//  2. auto picks VRFY, then EXPN, then RCPT: the first that tells users
//     apart. An explicitly chosen method is used only if it does.
//  3. Workers (--concurrency), each on one connection reused for many
//     guesses, ask about every name within --rate. RCPT probes are
//     MAIL/RCPT/RSET (pipelined when offered). A 421 or a closed
//     connection means throttling: reconnect with a growing delay, retry
//     the guess, give up after MaxReconnects. A reply slower than
//     SlowReply marks a tarpit; a 4xx to a guess marks greylisting and the
//     guess is inconclusive, never counted as valid or invalid.

// prober asks one connection about names, reconnecting when needed.
type prober struct {
	o          *Options
	method     string
	useTLS     bool
	domain     string
	s          *smtpSession
	refusals   int // on the current connection
	reconnects int
	gaveUp     bool // no more connections: every further guess is inconclusive
	st         *enumState
}

// enumState is what the workers share.
type enumState struct {
	mu         sync.Mutex
	throttled  bool
	tarpit     bool
	greylisted bool
	reconnects int
	evidence   []string
}

func (st *enumState) note(f func()) { st.mu.Lock(); f(); st.mu.Unlock() }

var errGaveUp = errors.New("gave up after repeated disconnections")

// ask sends one probe on the current connection.
func (p *prober) ask(name string) (reply, []string, error) {
	switch p.method {
	case "vrfy", "expn":
		line := strings.ToUpper(p.method) + " " + name
		r, err := p.s.cmd(line)
		return r, []string{"C: " + line, "S: " + r.text()}, err
	}
	mail := "MAIL FROM:<" + p.o.From + ">"
	rcpt := "RCPT TO:<" + name + ">"
	if p.s.has("PIPELINING") {
		ev := []string{"C: " + mail + " (pipelined with RCPT TO and RSET)"}
		if err := p.s.writeRaw([]byte(mail + "\r\n" + rcpt + "\r\nRSET\r\n")); err != nil {
			return reply{}, ev, err
		}
		mr, err := p.s.readReply()
		if err != nil {
			return mr, ev, err
		}
		rr, err := p.s.readReply()
		if err != nil {
			return rr, ev, err
		}
		ev = append(ev, "S: "+mr.text(), "C: "+rcpt, "S: "+rr.text())
		if _, err := p.s.readReply(); err != nil {
			return rr, ev, err
		}
		if mr.code != 250 && mr.code != 421 {
			return mr, ev, &replyError{"MAIL FROM", mr}
		}
		if mr.code == 421 {
			return mr, ev, nil
		}
		return rr, ev, nil
	}
	mr, err := p.s.cmd(mail)
	ev := []string{"C: " + mail, "S: " + mr.text()}
	if err != nil || mr.code == 421 {
		return mr, ev, err
	}
	if mr.code != 250 {
		p.s.cmd("RSET")
		return mr, ev, &replyError{"MAIL FROM", mr}
	}
	rr, err := p.s.cmd(rcpt)
	ev = append(ev, "C: "+rcpt, "S: "+rr.text())
	if err != nil || rr.code == 421 {
		return rr, ev, err
	}
	_, err = p.s.cmd("RSET")
	return rr, ev, err
}

// probe asks about one name, reconnecting on 421 or a lost connection.
func (p *prober) probe(ctx context.Context, name string) (reply, []string, error) {
	for {
		if err := ctx.Err(); err != nil {
			return reply{}, nil, err
		}
		if p.gaveUp {
			return reply{}, nil, errGaveUp
		}
		var r reply
		var ev []string
		var err error
		if p.s == nil {
			var s *smtpSession
			s, err = openSMTP(ctx, p.o, p.useTLS)
			var re *replyError
			switch {
			case err == nil:
				p.s = s
			case errors.As(err, &re) && re.r.code != 421:
				return reply{}, nil, err
			case errors.As(err, &re):
				r = re.r // 421 at the greeting: the server refuses us for now
			}
		}
		if p.s != nil {
			r, ev, err = p.ask(name)
			if r.took > p.o.SlowReply || isTimeout(err) {
				p.st.note(func() {
					if !p.st.tarpit {
						p.st.evidence = append(p.st.evidence, fmt.Sprintf("reply to a %s probe took %s (tarpit threshold %s)", p.method, r.took.Round(time.Millisecond), p.o.SlowReply))
					}
					p.st.tarpit = true
				})
			}
			var re *replyError
			if errors.As(err, &re) {
				return r, ev, err
			}
			if err == nil && r.code != 421 {
				if r.permanent() {
					p.refusals++
					if p.o.RecycleAfter > 0 && p.refusals >= p.o.RecycleAfter {
						p.close()
					}
				}
				return r, ev, nil
			}
			p.s.Close()
			p.s = nil
			p.refusals = 0
		}
		// 421, a closed connection or a refused reconnection: throttled.
		p.st.note(func() {
			if !p.st.throttled {
				what := "connection lost: " + fmt.Sprint(err)
				if r.code == 421 {
					what = "S: " + r.text()
				}
				if errors.Is(err, io.EOF) {
					what = "server closed the connection"
				}
				p.st.evidence = append(p.st.evidence, "during "+p.method+" probes: "+what)
			}
			p.st.throttled = true
		})
		if p.reconnects >= p.o.MaxReconnects {
			p.gaveUp = true
			return r, ev, errGaveUp
		}
		delay := p.o.ReconnectDelay << p.reconnects
		p.reconnects++
		p.st.note(func() { p.st.reconnects++ })
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return r, ev, ctx.Err()
		}
	}
}

func (p *prober) close() {
	if p.s != nil {
		p.s.quit()
		p.s = nil
	}
	p.refusals = 0
}

// qualify turns a wordlist entry into what is sent for method.
func qualify(name, domain, method string) string {
	if strings.Contains(name, "@") || domain == "" {
		if method == "rcpt" && !strings.Contains(name, "@") && !strings.EqualFold(name, "postmaster") {
			return name + "@localhost"
		}
		return name
	}
	return name + "@" + domain
}

// baseline says whether method tells users apart, from its answers to
// random names and postmaster.
func baseline(ctx context.Context, p *prober, r *Report) (state string, catchAll bool, evidence []string) {
	for i := 0; i < 2; i++ {
		fake := qualify(p.o.randomLocal(), p.domain, p.method)
		rep, ev, err := p.probe(ctx, fake)
		evidence = append(evidence, ev...)
		switch {
		case err != nil:
			return "no answer: " + err.Error(), false, evidence
		case rep.code == 250 || rep.code == 251 || (rep.code == 252 && p.method == "rcpt"):
			return "accepts any name (catch-all)", true, evidence
		case rep.code == 252:
			return "non-committal", false, evidence
		case rep.code == 500 || rep.code == 502 || rep.code == 504:
			return "disabled", false, evidence
		case rep.permanent() && !userUnknown(rep):
			return "refuses every name: " + rep.first(), false, evidence
		case rep.transient():
			greylist := classifyTransient(rep) == "greylisted"
			p.st.note(func() {
				if greylist {
					p.st.greylisted = true
				} else {
					p.st.throttled = true
				}
				p.st.evidence = append(p.st.evidence, ev...)
			})
			if greylist {
				return "greylisted", false, evidence
			}
			return "temporary failure", false, evidence
		}
	}
	return "reliable", false, evidence
}

// classifyTransient tells greylisting from rate limiting in a 4xx reply.
func classifyTransient(r reply) string {
	t := strings.ToLower(r.text())
	for _, w := range []string{"rate", "too many", "limit", "slow down", "try again later", "throttl"} {
		if strings.Contains(t, w) && !strings.Contains(t, "grey") && !strings.Contains(t, "gray") {
			return "throttled"
		}
	}
	return "greylisted"
}

// rateLimiter spaces guesses over all workers.
type rateLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func (l *rateLimiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	select {
	case <-time.After(time.Until(at)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wordlist cleans the user list: no blanks, comments or duplicates.
func wordlist(users []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range users {
		u = strings.TrimSpace(u)
		if u == "" || strings.HasPrefix(u, "#") || seen[strings.ToLower(u)] {
			continue
		}
		seen[strings.ToLower(u)] = true
		out = append(out, u)
	}
	return out
}

// enumerate finds which of o.Users exist.
func enumerate(ctx context.Context, o *Options, r *Report) {
	u := &r.Users
	st := &enumState{}
	domain := o.Domain
	if domain == "" {
		domain = r.Hostname
	}
	useTLS := r.TLS.Version != "" && !r.TLS.Implicit
	newProber := func(method string) *prober {
		return &prober{o: o, method: method, useTLS: useTLS, domain: domain, st: st}
	}
	candidates := []string{o.Method}
	if o.Method == "auto" {
		candidates = nil
		if r.VRFY == "reveals users" {
			candidates = append(candidates, "vrfy")
		}
		if r.EXPN == "reveals users" {
			candidates = append(candidates, "expn")
		}
		candidates = append(candidates, "rcpt")
	}
	var chosen *prober
	var baseEvidence []string
	for _, m := range candidates {
		p := newProber(m)
		state, catchAll, ev := baseline(ctx, p, r)
		u.Methods[m] = state
		if catchAll {
			u.CatchAll = true
			r.add(Finding{ID: "catch-all", Severity: Info,
				Title:    strings.ToUpper(m) + " accepts names that cannot exist: the domain is a catch-all, so no user can be confirmed this way",
				Evidence: ev,
				Fix:      "Nothing to fix if intended; a catch-all attracts spam and backscatter."})
		}
		if state == "reliable" {
			chosen, baseEvidence = p, ev
			break
		}
		p.close()
	}
	u.Throttled, u.Greylisted, u.Tarpit = st.throttled, st.greylisted, st.tarpit
	if chosen == nil {
		u.Method = "none"
		if o.Method != "auto" {
			u.Method = o.Method
		}
		u.Complete = true
		noteEnumFlags(r, st)
		return
	}
	u.Method = chosen.method
	defer chosen.close() // after the workers, one of which uses it

	names := wordlist(o.Users)
	var lim *rateLimiter
	if o.Rate > 0 {
		lim = &rateLimiter{interval: time.Duration(float64(time.Second) / o.Rate)}
	}
	jobs := make(chan string)
	var done atomic.Int64
	var mu sync.Mutex
	var validEv []string
	complete := true
	workers := min(o.Concurrency, len(names))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		p := chosen
		if w > 0 {
			p = newProber(chosen.method)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.close()
			for name := range jobs {
				addr := qualify(name, domain, p.method)
				rep, ev, err := p.probe(ctx, addr)
				mu.Lock()
				u.Tried++
				switch {
				case err != nil:
					u.Inconclusive = append(u.Inconclusive, addr)
					complete = false
				case rep.code >= 250 && rep.code <= 252:
					u.Valid = append(u.Valid, addr)
					if p.method == "expn" {
						if m := expansion(rep, addr); len(m) > 0 {
							u.Expanded[addr] = m
						}
					}
					if validEv == nil {
						validEv = ev
					}
				case rep.permanent() && !userUnknown(rep):
					// A policy refusal (5.7.x, relay) says nothing about
					// the user.
					u.Inconclusive = append(u.Inconclusive, addr)
				case rep.transient():
					u.Inconclusive = append(u.Inconclusive, addr)
					kind := classifyTransient(rep)
					st.note(func() {
						if kind == "greylisted" {
							st.greylisted = true
						} else {
							st.throttled = true
						}
						if len(st.evidence) < 6 {
							st.evidence = append(st.evidence, ev...)
						}
					})
				}
				mu.Unlock()
				if o.Progress != nil {
					o.Progress(int(done.Add(1)), len(names))
				}
			}
		}()
	}
feed:
	for _, n := range names {
		if err := lim.wait(ctx); err != nil {
			break
		}
		select {
		case jobs <- n:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil || u.Tried < len(names) {
		complete = false
	}
	u.Complete = complete
	sort.Strings(u.Valid)
	sort.Strings(u.Inconclusive)
	u.Throttled, u.Greylisted, u.Tarpit, u.Reconnects = st.throttled, st.greylisted, st.tarpit, st.reconnects

	if len(u.Valid) > 0 {
		// RCPT must tell unknown users apart; a server that throttles that
		// has done what it can, so the residue is low.
		sev := Medium
		if u.Method == "rcpt" && (u.Throttled || u.Tarpit) {
			sev = Low
		}
		ev := append(append([]string{}, validEv...), "-- a name that cannot exist:")
		ev = append(ev, baseEvidence...)
		r.add(Finding{ID: "users-enumerated", Severity: sev,
			Title:    fmt.Sprintf("%d of %d tried users confirmed with %s", len(u.Valid), u.Tried, strings.ToUpper(u.Method)),
			Evidence: ev,
			Fix:      enumFix(u.Method)})
	}
	if u.Method == "rcpt" && !u.Throttled && !u.Tarpit && u.Tried >= 5 {
		r.add(Finding{ID: "rcpt-enumeration-unlimited", Severity: Low,
			Title:    fmt.Sprintf("RCPT TO answered %d guesses with no throttling or delay: the user list can be brute-forced", u.Tried),
			Evidence: baseEvidence,
			Fix:      "Slow down and then disconnect clients that probe many unknown recipients (Postfix: smtpd_hard_error_limit, smtpd_error_sleep_time; postscreen)."})
	}
	noteEnumFlags(r, st)
}

func enumFix(method string) string {
	if method == "rcpt" {
		return "Rejecting unknown recipients is required, but throttle clients that try many (growing delays, then 421), per connection and per IP."
	}
	return "Disable " + strings.ToUpper(method) + " or make it answer 252 for every name."
}

// noteEnumFlags turns throttling, tarpits and greylisting into info
// findings, so a reader knows why results may be partial.
func noteEnumFlags(r *Report, st *enumState) {
	u := r.Users
	if u.Throttled || u.Tarpit || u.Greylisted {
		var what []string
		for _, f := range []struct {
			on   bool
			name string
		}{{u.Throttled, "throttling"}, {u.Tarpit, "a tarpit (slow replies)"}, {u.Greylisted, "greylisting (4xx)"}} {
			if f.on {
				what = append(what, f.name)
			}
		}
		r.add(Finding{ID: "enumeration-defended", Severity: Info,
			Title:    "The server defends against enumeration with " + strings.Join(what, ", ") + "; affected guesses are reported as inconclusive, not as results",
			Evidence: st.evidence,
			Fix:      "Nothing to fix: this is a good defence."})
	}
}

var angleAddr = regexp.MustCompile(`<([^<>\s]+@[^<>\s]+)>`)

// expansion lists the addresses in an EXPN reply other than the name
// asked about (RFC 5321 3.5.2).
func expansion(r reply, asked string) []string {
	var out []string
	for _, l := range r.lines {
		for _, m := range angleAddr.FindAllStringSubmatch(l, -1) {
			if !strings.EqualFold(m[1], asked) && !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	}
	return out
}
