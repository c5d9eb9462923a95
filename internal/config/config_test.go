package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current results")

// TestGolden loads every testdata/*.toml and compares the outcome with the
// matching .golden file: the exact one-line error, or "ok".
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.toml files")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			got := "ok"
			if _, err := Load(f); err != nil {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Errorf("error is %T, want *config.Error: %v", err, err)
				}
				got = err.Error()
				if strings.ContainsAny(got, "\r\n") {
					t.Errorf("error is not one line: %q", got)
				}
				if !strings.HasPrefix(got, f) {
					t.Errorf("error does not start with the file name %q: %q", f, got)
				}
			}
			golden := strings.TrimSuffix(f, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/config -update to create it)", err)
			}
			if got != strings.TrimRight(string(want), "\n") {
				t.Errorf("Load(%s):\n got: %s\nwant: %s", f, got, strings.TrimRight(string(want), "\n"))
			}
		})
	}
}

// TestGoldenOrphans makes sure no golden file is left without its input.
func TestGoldenOrphans(t *testing.T) {
	goldens, _ := filepath.Glob("testdata/*.golden")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".toml"); err != nil {
			t.Errorf("%s has no matching .toml", g)
		}
	}
}

func TestFullFile(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Hostname: "mail.example.org",
		DataDir:  filepath.Join("testdata", "data"),
		Listen: Listen{
			SMTP:        []string{":25", "[::1]:2525"},
			Submission:  []string{":587"},
			Submissions: []string{":465"},
			IMAP:        []string{"192.0.2.1:143"},
			IMAPS:       []string{":993"},
			POP3:        []string{},
			POP3S:       []string{":995"},
			Admin:       []string{"127.0.0.1:9025"},
		},
		TLS:      TLS{Cert: filepath.Join("testdata", "tls", "cert.pem"), Key: "/etc/postern/key.pem"},
		DNS:      DNS{Resolver: "127.0.0.53:53"},
		Delivery: Delivery{MXPort: 2525, RelayHost: "smarthost.example.net:587"},
		Limits: Limits{
			MaxMessageSize:      10 << 20,
			MaxRecipients:       50,
			MaxConnections:      200,
			MaxConnectionsPerIP: 5,
			MaxLineLength:       4096,
			CommandTimeout:      Duration{2 * time.Minute},
			DataTimeout:         Duration{5*time.Minute + 30*time.Second},
			ShutdownGrace:       Duration{0},
			AuthFailDelay:       Duration{250 * time.Millisecond},
			AuthDelayAfter:      3,
			AuthDelayStep:       Duration{2 * time.Second},
			AuthMaxDelay:        Duration{30 * time.Second},
			AuthMaxFailures:     10,
			AuthWindow:          Duration{time.Hour},
			AuthCooldown:        Duration{2 * time.Hour},
			POP3IdleTimeout:     Duration{15 * time.Minute},
			IMAPMaxLineLength:   16384,
			IMAPMaxLiteralSize:  1 << 20,

			RcptUnknownDelayAfter: 5,
			RcptUnknownDelay:      Duration{2 * time.Second},
			RcptUnknownMax:        12,
			RcptUnknownPerIP:      30,
			RcptUnknownWindow:     Duration{5 * time.Minute},
			RcptUnknownCooldown:   Duration{time.Hour},
			RcptJitter:            Duration{5 * time.Millisecond},
			VRFY:                  false,
			LocalIPLiterals:       []string{"192.0.2.25", "2001:db8::25"},
			MaxReceivedHeaders:    120,
		},
		Queue: Queue{Retry: []Duration{{30 * time.Second}, {2 * time.Minute}}, MaxLifetime: Duration{48 * time.Hour},
			DelayWarning: Duration{2 * time.Hour}, Concurrency: 8},
		AuthChecks: AuthChecks{Enabled: true, SPFFail: "tag", Timeout: Duration{10 * time.Second}, SkipNetworks: []string{"10.0.0.0/8"}},
		File:       "testdata/full.toml",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(full.toml):\n got %+v\nwant %+v", c, want)
	}
	if c.Dev {
		t.Error("Dev is true for a loaded file")
	}
}

// TestMissingKeysGetDefaults checks that a file with only a hostname gets
// the production defaults for everything else.
func TestMissingKeysGetDefaults(t *testing.T) {
	c, err := Load("testdata/minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Production()
	want.Hostname = "mail.example.org"
	want.File = "testdata/minimal.toml"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if c.Limits.MaxMessageSize != 50<<20 || c.Limits.MaxRecipients != 100 {
		t.Errorf("limits: got size %d, recipients %d; want 50MiB, 100", c.Limits.MaxMessageSize, c.Limits.MaxRecipients)
	}
}

// TestEmptyListDisables checks that "smtp = []" replaces the default list
// rather than keeping it.
func TestEmptyListDisables(t *testing.T) {
	c, err := Load("testdata/listeners_disabled.toml")
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listen
	for name, addrs := range map[string][]string{"smtp": l.SMTP, "submission": l.Submission, "submissions": l.Submissions,
		"imap": l.IMAP, "imaps": l.IMAPS, "pop3": l.POP3, "pop3s": l.POP3S, "admin": l.Admin} {
		if len(addrs) != 0 {
			t.Errorf("listen.%s = %q, want empty", name, addrs)
		}
	}
}

func TestRelativeDataDir(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sub, "postern.toml")
	if err := os.WriteFile(path, []byte("hostname = \"mail.example.org\"\ndata_dir = \"../var/mail\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "var", "mail"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q", c.DataDir, want)
	}

	// An absolute data_dir is kept as it is.
	abs := filepath.Join(dir, "abs")
	if err := os.WriteFile(path, []byte("data_dir = \""+filepath.ToSlash(abs)+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(path); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != abs {
		t.Errorf("data_dir = %q, want %q", c.DataDir, abs)
	}
}

func TestDevelopmentDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Dev {
		t.Error("Dev is false")
	}
	if c.File != "" {
		t.Errorf("File = %q, want empty", c.File)
	}
	if c.Hostname != "localhost" {
		t.Errorf("hostname = %q, want localhost", c.Hostname)
	}
	if c.DataDir != "postern-data" {
		t.Errorf("data_dir = %q, want postern-data", c.DataDir)
	}
	want := Listen{
		SMTP:        []string{"127.0.0.1:2525"},
		Submission:  []string{"127.0.0.1:2587"},
		Submissions: []string{"127.0.0.1:2465"},
		IMAP:        []string{"127.0.0.1:2143"},
		IMAPS:       []string{"127.0.0.1:2993"},
		POP3:        []string{"127.0.0.1:2110"},
		POP3S:       []string{"127.0.0.1:2995"},
		Admin:       []string{"127.0.0.1:8025"},
	}
	if !reflect.DeepEqual(c.Listen, want) {
		t.Errorf("listen = %+v\nwant %+v", c.Listen, want)
	}
	if !reflect.DeepEqual(c.Limits, defaultLimits()) {
		t.Errorf("limits = %+v, want %+v", c.Limits, defaultLimits())
	}
	if c.Delivery.MXPort != 25 {
		t.Errorf("delivery.mx_port = %d, want 25", c.Delivery.MXPort)
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(missing) = %v, want *config.Error", err)
	}
	if want := path + ": cannot read: no such file or directory"; err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1048576, true},
		{"512KiB", 512 << 10, true},
		{"50MiB", 50 << 20, true},
		{"10 MiB", 10 << 20, true},
		{"1GiB", 1 << 30, true},
		{"10MB", 10_000_000, true},
		{"2KB", 2000, true},
		{"3GB", 3_000_000_000, true},
		{"100B", 100, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"50 megs", 0, false},
		{"99999999999999GiB", 0, false},
		{"9223372036854775807KiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
		}
	}
}

// TestPerIPFollowsTotal checks that lowering max_connections below the
// default per-IP limit lowers that limit too, and that an explicit per-IP
// value above the total is still an error (testdata/limits_per_ip_above_total).
func TestPerIPFollowsTotal(t *testing.T) {
	c, err := Load("testdata/limits_connections_only.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxConnections != 10 || c.Limits.MaxConnectionsPerIP != 10 {
		t.Errorf("max_connections %d, max_connections_per_ip %d; want 10 and 10", c.Limits.MaxConnections, c.Limits.MaxConnectionsPerIP)
	}
}
