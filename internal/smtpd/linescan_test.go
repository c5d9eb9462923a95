package smtpd

import (
	"io"
	"math/rand"
	"strings"
	"testing"
)

// refChecker is the byte-by-byte scan lineChecker.scan replaced, kept as
// the reference the faster scan must agree with.
type refChecker struct {
	maxLine, lineLen int
	prevCR, nul      bool
	err              error
}

func (c *refChecker) write(p []byte) {
	if c.err != nil {
		return
	}
	for _, b := range p {
		if c.prevCR && b != '\n' || b == '\n' && !c.prevCR {
			c.err = errBareLineEnd
			return
		}
		c.prevCR = b == '\r'
		c.lineLen++
		if b == '\n' {
			c.lineLen = 0
		} else if c.maxLine > 0 && c.lineLen+1 > c.maxLine {
			c.err = errLongLine
			return
		}
		if b == 0 {
			c.nul = true
		}
	}
}

// TestScanMatchesByteByByte: over random messages of CR, LF, CRLF, NUL,
// dots and text of random line lengths, split into random writes, the
// line-wise scan reports the same fault (or none) as the byte-wise one,
// and the same NUL finding when there is no fault.
func TestScanMatchesByteByByte(t *testing.T) {
	pieces := []string{"\r\n", "\r", "\n", "\x00", ".", "a", "text ", strings.Repeat("y", 17), strings.Repeat("z", 60)}
	rnd := rand.New(rand.NewSource(7))
	for i := 0; i < 20000; i++ {
		var sb strings.Builder
		for j := rnd.Intn(25); j >= 0; j-- {
			// Mostly well-formed lines, so that long-line faults occur.
			if rnd.Intn(3) > 0 {
				sb.WriteString(pieces[rnd.Intn(len(pieces))])
			} else {
				sb.WriteString(strings.Repeat("w", rnd.Intn(40)) + "\r\n")
			}
		}
		msg := []byte(sb.String())
		maxLine := []int{0, 3, 10, 50, 80}[rnd.Intn(5)]
		ref := &refChecker{maxLine: maxLine}
		lc := &lineChecker{w: io.Discard, maxLine: maxLine}
		for rest := msg; len(rest) > 0; {
			n := 1 + rnd.Intn(len(rest))
			ref.write(rest[:n])
			lc.Write(rest[:n])
			rest = rest[n:]
		}
		if lc.err != ref.err || lc.err == nil && lc.nul != ref.nul {
			t.Fatalf("message %q, max_line %d: scan err %v nul %v, byte-wise err %v nul %v", msg, maxLine, lc.err, lc.nul, ref.err, ref.nul)
		}
	}
}
