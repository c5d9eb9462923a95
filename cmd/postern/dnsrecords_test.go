package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/postern-mail/postern/internal/dnsx/dnstest"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden")

// stable replaces what changes from run to run (key material, dated
// selectors and ids) in dns-records output.
func stable(s string) string {
	s = regexp.MustCompile(`p=[A-Za-z0-9+/=]+("\s*"[A-Za-z0-9+/=]+)*`).ReplaceAllString(s, "p=KEY")
	s = regexp.MustCompile(`\bp\d{6}([a-z])\b`).ReplaceAllString(s, "pYYYYMM$1")
	return regexp.MustCompile(`id=\d{8}`).ReplaceAllString(s, "id=YYYYMMDD")
}

// dnsConfig is testConfig with submission and IMAPS on, and a resolver.
func dnsConfig(t *testing.T, resolver string) string {
	cfg := testConfig(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "submission = []", `submission = [":587"]`, 1)
	s = strings.Replace(s, "imaps = []", `imaps = ["[::]:993"]`, 1)
	s += fmt.Sprintf("\n[dns]\nresolver = %q\n", resolver)
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestDNSRecordsGolden(t *testing.T) {
	cfg := dnsConfig(t, "")
	fails(t, 1, "not a hosted domain", cfg, "", "dns-records", "example.org")
	ok(t, cfg, "", "domain", "add", "example.org")
	out := ok(t, cfg, "", "dns-records", "example.org")
	golden := filepath.Join("testdata", "dns-records.golden")
	if *updateGolden {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(stable(out)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/postern -run DNSRecords -update writes it)", err)
	}
	if stable(out) != string(want) {
		t.Errorf("dns-records output:\n%s\nwant:\n%s", stable(out), want)
	}
	// Every line that is not a comment is a valid record.
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if _, err := dns.NewRR(line); err != nil {
			t.Errorf("not a zone-file record: %q: %v", line, err)
		}
	}

	// After a rotation both pairs are listed, the old one as retired.
	ok(t, cfg, "", "domain", "dkim-rotate", "example.org")
	out = ok(t, cfg, "", "dns-records", "example.org")
	if n := strings.Count(out, "._domainkey.example.org."); n != 4 || strings.Count(out, "retired from signing") != 2 {
		t.Errorf("after rotation:\n%s", out)
	}
	if got := ok(t, cfg, "", "domain", "dkim-rotate", "example.org", "--retire"); !strings.HasPrefix(got, "deleted DKIM keys p") {
		t.Errorf("retire: %q", got)
	}
	out = ok(t, cfg, "", "dns-records", "example.org")
	if n := strings.Count(out, "._domainkey.example.org."); n != 2 || strings.Contains(out, "retired") {
		t.Errorf("after retire:\n%s", out)
	}
}

func TestDNSRecordsCheck(t *testing.T) {
	srv := dnstest.StartServer(t, nil)
	cfg := dnsConfig(t, srv.Addr)
	ok(t, cfg, "", "domain", "add", "example.org")
	out := ok(t, cfg, "", "dns-records", "example.org")
	// Publish exactly what it printed.
	zone := map[string][]dns.RR{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatal(err)
		}
		zone[rr.Header().Name] = append(zone[rr.Header().Name], rr)
	}
	for name, rrs := range zone {
		srv.Set(name, rrs)
	}
	got := ok(t, cfg, "", "dns-records", "example.org", "--check")
	if strings.Count(got, "\nok ")+1 != strings.Count(got, "\n") || !strings.HasPrefix(got, "ok ") {
		t.Errorf("all published, --check says:\n%s", got)
	}

	// One missing, one different.
	srv.Set("_dmarc.example.org.", nil)
	srv.Set("example.org.", []dns.RR{dnstest.RR(t, `example.org. TXT "v=spf1 a -all"`), dnstest.RR(t, "example.org. MX 10 mail.example.org.")})
	r := cli(t, cfg, "", "dns-records", "example.org", "--check")
	if r.code != 1 || !strings.Contains(r.stderr, "2 of the records of example.org are missing or different") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"missing   _dmarc.example.org. TXT", "different example.org. TXT \"v=spf1 mx -all\"\n          found: \"v=spf1 a -all\"", "ok        example.org. MX 10 mail.example.org."} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--check lacks %q:\n%s", want, r.stdout)
		}
	}
}
