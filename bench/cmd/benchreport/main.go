// Command benchreport turns the output of bench/run (go test -bench lines)
// into one table, figure by figure: Postern, the peer, and their ratio. It
// prints the table as Markdown, writes it as JSON, and, when gnuplot is
// installed, draws the ratios as a PNG bar chart.
//
//	go run ./bench/cmd/benchreport -in bench/results/raw.txt -out bench/results
//
// Benchmarks report metrics named "postern-<figure>" and "<peer>-<figure>"
// (for example postern-msgs/s and postfix-accept-msgs/s), one row per peer
// when a benchmark has several (Postfix and maddy for SMTP inbound, Dovecot
// and maddy for IMAP); the benchmarks' own "ratio" and "ratio-vs-<peer>"
// metrics are left out, as each row computes its ratio; a figure whose
// name says seconds, milliseconds or MiB of memory is better when lower,
// and its ratio is inverted so that above 1 always means Postern is ahead.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Row is one figure of one benchmark.
type Row struct {
	Benchmark string  `json:"benchmark"`
	Figure    string  `json:"figure"`
	Postern   float64 `json:"postern"`
	Peer      string  `json:"peer,omitempty"`
	PeerValue float64 `json:"peer_value,omitempty"`
	// Ratio is how many times better Postern is (above 1: ahead), 0
	// when there is no peer figure.
	Ratio float64 `json:"ratio,omitempty"`
}

func lowerIsBetter(figure string) bool {
	for _, s := range []string{"-ms", "s/download", "MiB", "fsyncs", "-growth", "cpu-s/1kmsg"} {
		if strings.HasSuffix(figure, s) {
			return true
		}
	}
	return false
}

// parse reads "BenchmarkX-2  1  123 ns/op  4.5 postern-msgs/s ..." lines.
func parse(r io.Reader) []Row {
	var rows []Row
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		// bench/run runs some benchmarks twice with other flags.
		if seen[name]++; seen[name] > 1 {
			name = fmt.Sprintf("%s (run %d)", name, seen[name])
		}
		metrics := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				metrics[f[i+1]] = v
			}
		}
		var names []string
		for m := range metrics {
			names = append(names, m)
		}
		sort.Strings(names)
		for _, m := range names {
			fig, ok := strings.CutPrefix(m, "postern-")
			if !ok {
				if m == "ns/op" || strings.HasPrefix(m, "ratio") || strings.Contains(m, "-") && !strings.HasPrefix(m, "p50") && !strings.HasPrefix(m, "p99") {
					continue // peers' figures are read with Postern's
				}
				fig = m // a Postern-only benchmark (bench/smtp_test.go)
			}
			// One row per peer with this figure (the SMTP inbound
			// benchmark has two: Postfix and maddy), or one without.
			paired := map[string]bool{}
			for _, other := range names { // sorted: the pairing is stable
				v := metrics[other]
				peer, pfig, ok := strings.Cut(other, "-")
				if !ok || peer == "postern" || v == 0 || paired[peer] {
					continue
				}
				// "postfix-accept-msgs/s" pairs with "msgs/s".
				if pfig == fig || strings.HasSuffix(pfig, "-"+fig) {
					paired[peer] = true
					row := Row{Benchmark: name, Figure: fig, Postern: metrics[m], Peer: peer + " (" + pfig + ")", PeerValue: v}
					if lowerIsBetter(fig) {
						row.Ratio = v / row.Postern
					} else {
						row.Ratio = row.Postern / v
					}
					rows = append(rows, row)
				}
			}
			if len(paired) == 0 {
				rows = append(rows, Row{Benchmark: name, Figure: fig, Postern: metrics[m]})
			}
		}
	}
	return rows
}

func main() {
	in := flag.String("in", "bench/results/raw.txt", "go test -bench output")
	out := flag.String("out", "bench/results", "directory for results.json and ratios.png")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	rows := parse(f)
	f.Close()
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark lines in", *in)
		os.Exit(1)
	}
	fmt.Println("| benchmark | figure | Postern | peer | peer value | ratio (>1: Postern ahead) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		peer, pv, ratio := "", "", ""
		if r.Peer != "" {
			peer, pv, ratio = r.Peer, fmt.Sprintf("%.4g", r.PeerValue), fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Printf("| %s | %s | %.4g | %s | %s | %s |\n", r.Benchmark, r.Figure, r.Postern, peer, pv, ratio)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	j, _ := json.MarshalIndent(map[string]any{"rows": rows}, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "results.json"), append(j, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	if err := chart(rows, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport: no chart:", err)
	}
}

// headline lists the figures the chart shows (benchmark name prefix and
// figure); the table and results.json keep every figure. Without any of
// them in the input the chart shows all ratios.
var headline = []struct{ bench, figure, label string }{
	{"SMTPInboundVsPeers", "msgs/s", "SMTP in msgs/s"},
	{"SMTPInboundVsPeers", "cpu-s/1kmsg", "SMTP in CPU/msg"},
	{"SMTPInboundVsPeers", "p99-ms", "SMTP in p99"},
	{"SMTPInboundSmtpSource", "msgs/s", "SMTP in msgs/s, smtp-source"},
	{"POP3Download", "msgs/s", "POP3 msgs/s"},
	{"IMAPMixed20", "ops/s", "IMAP ops/s"},
	{"QueueDrain", "msgs/s", "drain msgs/s"}, // bench/run: DKIM-signed in the drain, (run 2) unsigned, (run 3) signed before it
	{"LargeMailbox", "select-100k-ms", "SELECT 100k"},
	{"LargeMailbox", "fetchflags-100k-ms", "FETCH FLAGS 100k"},
	{"LargeMailbox", "search-100k-ms", "SEARCH 100k"},
}

// chart draws the headline ratios with gnuplot (Debian's gnuplot-nox), on
// a logarithmic scale so that 0.5x and 2x look alike in size.
func chart(rows []Row, dir string) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return err
	}
	var data strings.Builder
	for _, h := range headline {
		for _, r := range rows {
			if r.Ratio > 0 && strings.HasPrefix(r.Benchmark, h.bench) && r.Figure == h.figure {
				peer, _, _ := strings.Cut(r.Peer, " ")
				label := h.label
				if h.bench == "QueueDrain" {
					switch {
					case strings.Contains(r.Benchmark, "(run 2)"):
						label += ", unsigned"
					case strings.Contains(r.Benchmark, "(run 3)"):
						label += ", signed on receipt"
					default:
						label += ", DKIM"
					}
				} else if _, run, ok := strings.Cut(r.Benchmark, "(run "); ok {
					label += " (" + strings.TrimSuffix(run, ")") + ")"
				}
				fmt.Fprintf(&data, "\"%s\\nvs %s\" %.3f\n", label, peer, r.Ratio)
			}
		}
	}
	if data.Len() == 0 {
		for _, r := range rows {
			if r.Ratio > 0 {
				peer, _, _ := strings.Cut(r.Peer, " ")
				fmt.Fprintf(&data, "\"%s %s\\nvs %s\" %.3f\n", r.Benchmark, r.Figure, peer, r.Ratio)
			}
		}
	}
	if data.Len() == 0 {
		return fmt.Errorf("no ratios")
	}
	dat := filepath.Join(dir, "ratios.dat")
	if err := os.WriteFile(dat, []byte(data.String()), 0o644); err != nil {
		return err
	}
	script := fmt.Sprintf(`set terminal pngcairo size 1400,650 font ",10"
set output %q
set style fill solid 0.8
set boxwidth 0.7
set ylabel "Postern / peer, log scale (above 1: Postern ahead)"
set logscale y 2
set yrange [0.125:256]
set xtics rotate by -35 nomirror
set grid ytics
set bmargin 9
set key off
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "red" lw 2
plot %q using 0:2:xtic(1) with boxes lc rgb "#4a7ab5", "" using 0:2:(sprintf("%%.2f", $2)) with labels offset 0,0.8
`, filepath.Join(dir, "ratios.png"), dat)
	cmd := exec.Command(gp)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return nil
}
