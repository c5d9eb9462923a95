//go:build windows

package bench

import "testing"

// startMaddyIMAP reports that maddy is not run on Windows (see
// maddy_test.go, which starts it on other systems).
func startMaddyIMAP(b *testing.B) (srv imapServer, missing string) {
	return imapServer{}, "maddy is not run on Windows by the benchmarks"
}
