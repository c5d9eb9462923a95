package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

// readData runs the DATA reader over in with the given underlying reader
// wrapper and read size, returning what it passed on, the error that ended
// it and what was left unread after the end marker.
func readData(in []byte, wrap func(io.Reader) io.Reader, size int) ([]byte, error, []byte) {
	br := bufio.NewReaderSize(wrap(bytes.NewReader(in)), 16)
	r := &dataReader{r: br}
	var out []byte
	buf := make([]byte, size)
	var err error
	for {
		var n int
		n, err = r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	rest, _ := io.ReadAll(br)
	return out, err, rest
}

// TestDataReaderRunsMatchByteByByte: the fast path that passes runs of
// buffered bytes on at once gives exactly what the byte-at-a-time state
// machine gives (a one-byte underlying reader leaves nothing buffered, so
// it never runs), for random mixes of dots, CRs, LFs, NULs and text, and
// for the smuggling sequences.
func TestDataReaderRunsMatchByteByByte(t *testing.T) {
	pieces := []string{".", "\r", "\n", "\r\n", "\x00", "a", "text ", ".\r\n", "\r\n.\r\n", "\n.\n", "\r.\r", "..", strings.Repeat("x", 40)}
	rnd := rand.New(rand.NewSource(1))
	inputs := []string{
		"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n",
		"a\n.\nb\r\n.\r\n", "a\r.\r\nb\r\n.\r\n", "a\r\n.\rb\r\n.\r\n", "a\r\n\x00.\r\nb\r\n.\r\n",
		"..leading dot\r\n.\r\nrest",
	}
	for i := 0; i < 3000; i++ {
		var sb strings.Builder
		for j := rnd.Intn(30); j >= 0; j-- {
			sb.WriteString(pieces[rnd.Intn(len(pieces))])
		}
		sb.WriteString("\r\n.\r\nNEXT")
		inputs = append(inputs, sb.String())
	}
	for _, in := range inputs {
		slowOut, slowErr, slowRest := readData([]byte(in), iotest.OneByteReader, 1)
		for _, size := range []int{1, 3, 7, 64, 4096} {
			out, err, rest := readData([]byte(in), func(r io.Reader) io.Reader { return r }, size)
			if !bytes.Equal(out, slowOut) || err != slowErr || !bytes.Equal(rest, slowRest) {
				t.Fatalf("input %q, read size %d:\n got %q %v rest %q\nwant %q %v rest %q", in, size, out, err, rest, slowOut, slowErr, slowRest)
			}
		}
	}
}
