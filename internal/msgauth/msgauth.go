// Package msgauth authenticates the senders of inbound mail and signs
// outbound mail: SPF (RFC 7208) for the HELO and MAIL FROM identities, DKIM
// (RFC 6376, rsa-sha256 and ed25519-sha256 per RFC 8463) for every
// signature, and DMARC (RFC 7489) with relaxed or strict alignment and the
// organizational domain taken from the public suffix list. The outcome is
// one Authentication-Results header field (RFC 8601) and a Verdict: accept,
// file as junk, reject, or try later.
//
// Every DNS query goes through internal/dnsx, bounded by Config.Timeout. A
// temporary DNS error never passes silently: when a lookup that failed could
// change the verdict, the verdict is TempFail (451 4.7.x).
package msgauth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/postern-mail/postern/internal/dnsx"
)

// Verdict is what the receiving server should do with a message.
type Verdict int

// Verdicts, from the best to the worst.
const (
	Accept   Verdict = iota // deliver to the inbox
	Junk                    // deliver to the Junk mailbox
	Reject                  // refuse with 550 5.7.1
	TempFail                // refuse with 451 4.7.x: a lookup failed
)

func (v Verdict) String() string {
	return [...]string{"accept", "junk", "reject", "tempfail"}[v]
}

// SPFAction is what to do with an SPF fail when the sender's domain
// publishes no DMARC policy ([auth_checks] spf_fail).
type SPFAction string

// SPF fail actions.
const (
	SPFJunk   SPFAction = "junk"
	SPFReject SPFAction = "reject"
	SPFTag    SPFAction = "tag" // only note it in Authentication-Results
)

// Config configures a Checker.
type Config struct {
	Hostname string         // authserv-id of the Authentication-Results header
	Resolver *dnsx.Resolver // every lookup goes through it
	Timeout  time.Duration  // bounds each phase of lookups (see Check); 0: 20 s
	SPFFail  SPFAction      // "" means SPFJunk
	// Skip lists the client networks whose mail is not checked (local
	// injection: SPF and DMARC mean nothing for 127.0.0.1).
	Skip []netip.Prefix
}

// Checker authenticates inbound messages. It is safe for concurrent use.
type Checker struct {
	cfg Config
}

// New returns a Checker.
func New(cfg Config) *Checker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.SPFFail == "" {
		cfg.SPFFail = SPFJunk
	}
	return &Checker{cfg: cfg}
}

// Result is the outcome of Check.
type Result struct {
	// Header is the complete Authentication-Results field, folded and
	// ending in CRLF.
	Header  string
	Verdict Verdict
	// Enhanced is the enhanced status code for Reject and TempFail (RFC
	// 3463, RFC 7372), and Reason a short text for the reply and the log.
	Enhanced [3]int
	Reason   string

	SPF      SPFResult // the MAIL FROM identity (postmaster@HELO for <>)
	SPFHelo  SPFResult // the HELO identity; Result "" when not checked
	DKIM     []DKIMResult
	DMARC    DMARCResult
	FromAddr string // the author domain (RFC5322.From), "" if none
	Skipped  bool   // the client is in Config.Skip: no checks, no header
}

// SPFResult is one SPF evaluation.
type SPFResult struct {
	Result   spf.Result
	Identity string // the address or HELO name checked
	Domain   string
	Err      error
}

// Check authenticates one message received from ip, which said helo and
// gave mailFrom ("" for <>). msg is the message as it arrived (it may be
// read while it streams in). The SPF lookups run while msg is read. An
// error is returned only when msg cannot be read.
//
// Config.Timeout bounds each phase, not the transfer: the SPF evaluation
// (from the start), each DKIM key lookup, and the DMARC lookup (after the
// end of the message). A large message on a slow link does not eat the
// time of the lookups that follow it.
func (c *Checker) Check(ctx context.Context, ip net.IP, helo, mailFrom string, msg io.Reader) (*Result, error) {
	res := &Result{}
	if a, ok := netip.AddrFromSlice(ip); ok {
		for _, p := range c.cfg.Skip {
			if p.Contains(a.Unmap()) {
				res.Skipped = true
				count(res)
				return res, nil
			}
		}
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		res.SPF, res.SPFHelo = c.checkSPF(ctx, ip, helo, mailFrom)
	}()

	hdr := &headerCapture{}
	dk, err := c.verifyDKIM(ctx, io.TeeReader(msg, hdr))
	if err == nil {
		// go-msgauth may stop early (no signatures): read to the end to
		// see a failed transfer.
		_, err = io.Copy(hdr, msg)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	res.DKIM = annotateDKIM(dk, hdr.fields("DKIM-Signature"))

	froms := hdr.fields("From")
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	res.DMARC = c.checkDMARC(dctx, froms, res.SPF, res.DKIM)
	res.FromAddr = res.DMARC.From
	c.decide(res)
	res.Header = c.formatHeader(res)
	count(res)
	return res, nil
}

// headerCapture keeps the header section of what is written to it.
type headerCapture struct {
	buf  bytes.Buffer
	done bool
}

// maxHeader bounds the header section kept for From and DKIM-Signature.
const maxHeader = 256 << 10

func (h *headerCapture) Write(p []byte) (int, error) {
	if h.done {
		return len(p), nil
	}
	start := max(h.buf.Len()-3, 0)
	h.buf.Write(p)
	b := h.buf.Bytes()
	if bytes.HasPrefix(b, []byte("\r\n")) {
		h.buf.Reset()
		h.done = true
	} else if i := bytes.Index(b[start:], []byte("\r\n\r\n")); i >= 0 {
		h.buf.Truncate(start + i + 2)
		h.done = true
	} else if h.buf.Len() > maxHeader {
		h.done = true
	}
	return len(p), nil
}

// fields returns the unfolded values of the header fields named name, top
// to bottom.
func (h *headerCapture) fields(name string) []string {
	var out []string
	var cur *strings.Builder
	for _, line := range strings.Split(h.buf.String(), "\r\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				cur.WriteString(line)
			}
			continue
		}
		if cur != nil {
			out = append(out, cur.String())
			cur = nil
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			cur = &strings.Builder{}
			cur.WriteString(v)
		}
	}
	if cur != nil {
		out = append(out, cur.String())
	}
	return out
}

// describe is a short reason for the log and the SMTP reply.
func describe(format string, a ...any) string {
	return fmt.Sprintf(format, a...)
}

// Summary is a one-line form of the results for logs and traces, e.g.
// "spf=pass dkim=pass,fail dmarc=pass verdict=accept".
func (r *Result) Summary() string {
	if r.Skipped {
		return "skipped"
	}
	dk := "none"
	if len(r.DKIM) > 0 {
		var rs []string
		for _, d := range r.DKIM {
			rs = append(rs, d.Result)
		}
		dk = strings.Join(rs, ",")
	}
	return "spf=" + string(r.SPF.Result) + " dkim=" + dk + " dmarc=" + r.DMARC.Result + " verdict=" + r.Verdict.String()
}
