package msgauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// KeyStore keeps the DKIM signing keys of the local domains. Each domain
// has two active keys, one Ed25519 (ed25519-sha256, RFC 8463) and one RSA
// 2048-bit (rsa-sha256, for verifiers without Ed25519), with dated
// selectors: pYYYYMMa, pYYYYMMb, then c, d... for a second pair that month.
//
// On disk, under the store's root (data_dir/dkim):
//
//	<domain>/<selector>.pem   the private key, PKCS #8 PEM, mode 0600
//	<domain>/active           the selectors that sign, one a line
//
// A key whose selector is not in active is retired from signing but still
// published (dns-records lists it) so that mail signed with it verifies
// until Retire deletes it. Files are written to a temporary name, synced
// and renamed, so a crash leaves the old set or the new one.
type KeyStore struct {
	dir string
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKeys
}

type cachedKeys struct {
	mtime time.Time
	keys  []Key
}

// Key is one DKIM key of a domain.
type Key struct {
	Domain   string
	Selector string
	Signer   crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
	Active   bool          // signs new mail (else only still published)
}

// Algorithm is the key type as DKIM names it: "ed25519" or "rsa".
func (k Key) Algorithm() string {
	if _, ok := k.Signer.(ed25519.PrivateKey); ok {
		return "ed25519"
	}
	return "rsa"
}

// Name is the DNS name of the key record.
func (k Key) Name() string { return k.Selector + "._domainkey." + k.Domain }

// Record is the text of the key's DNS TXT record (RFC 6376 3.6.1).
func (k Key) Record() (string, error) {
	var p []byte
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		p = pub // RFC 8463 4.2: the raw 32 bytes
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		p = der
	}
	return "v=DKIM1; k=" + k.Algorithm() + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// NewKeyStore returns the key store rooted at dir (data_dir/dkim).
func NewKeyStore(dir string) *KeyStore {
	return &KeyStore{dir: dir, now: time.Now, cache: map[string]cachedKeys{}}
}

func (ks *KeyStore) domainDir(domain string) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.ContainsAny(domain, `/\`) || strings.HasPrefix(domain, ".") {
		return "", fmt.Errorf("dkim: bad domain %q", domain)
	}
	return filepath.Join(ks.dir, domain), nil
}

// Keys returns every key of domain, active ones first, newest first; none
// (and no error) when the domain has no keys yet.
func (ks *KeyStore) Keys(domain string) ([]Key, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.load(domain)
}

// load reads a domain's keys, from the cache while its active file is
// unchanged. ks.mu is held.
func (ks *KeyStore) load(domain string) ([]Key, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	dir, err := ks.domainDir(domain)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(filepath.Join(dir, "active"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if c, ok := ks.cache[domain]; ok && c.mtime.Equal(fi.ModTime()) {
		return c.keys, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "active"))
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	active := map[string]bool{}
	for _, s := range strings.Fields(string(b)) {
		active[s] = true
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	var keys []Key
	for _, f := range files {
		sel := strings.TrimSuffix(filepath.Base(f), ".pem")
		signer, err := readKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, Key{Domain: domain, Selector: sel, Signer: signer, Active: active[sel]})
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].Active != keys[j].Active {
			return keys[i].Active
		}
		a, b := keys[i].Selector, keys[j].Selector
		if len(a) > 7 && len(b) > 7 && a[:7] != b[:7] {
			return a[:7] > b[:7] // newer month first
		}
		return a < b // a pair in order: ed25519, rsa
	})
	ks.cache[domain] = cachedKeys{mtime: fi.ModTime(), keys: keys}
	return keys, nil
}

// Active returns the keys that sign mail of domain, creating the domain's
// first pair when it has none (domains added before DKIM existed).
func (ks *KeyStore) Active(domain string) ([]Key, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, err := ks.load(domain)
	if err != nil {
		return nil, err
	}
	var out []Key
	for _, k := range keys {
		if k.Active {
			out = append(out, k)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return ks.rotate(domain)
}

// Ensure makes sure domain has active keys and returns them.
func (ks *KeyStore) Ensure(domain string) ([]Key, error) {
	return ks.Active(domain)
}

// Rotate makes a new pair of keys the active ones; the previous keys stay
// published until Retire.
func (ks *KeyStore) Rotate(domain string) ([]Key, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.rotate(domain)
}

func (ks *KeyStore) rotate(domain string) ([]Key, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	dir, err := ks.domainDir(domain)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	prefix := "p" + ks.now().UTC().Format("200601")
	var keys []Key
	letter := byte('a')
	for _, signer := range []crypto.Signer{edKey, rsaKey} {
		for ; letter <= 'z'; letter++ {
			if _, err := os.Stat(filepath.Join(dir, prefix+string(letter)+".pem")); errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if letter > 'z' {
			return nil, fmt.Errorf("dkim: no free selector left for %s in %s", domain, prefix)
		}
		sel := prefix + string(letter)
		letter++
		der, err := x509.MarshalPKCS8PrivateKey(signer)
		if err != nil {
			return nil, err
		}
		if err := writeFileSync(filepath.Join(dir, sel+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, err
		}
		keys = append(keys, Key{Domain: domain, Selector: sel, Signer: signer, Active: true})
	}
	if err := writeFileSync(filepath.Join(dir, "active"), []byte(keys[0].Selector+"\n"+keys[1].Selector+"\n")); err != nil {
		return nil, err
	}
	delete(ks.cache, domain)
	return keys, nil
}

// Retire deletes the keys of domain that no longer sign (after their DNS
// records are removed) and returns their selectors.
func (ks *KeyStore) Retire(domain string) ([]string, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	keys, err := ks.load(domain)
	if err != nil {
		return nil, err
	}
	dir, _ := ks.domainDir(domain)
	var gone []string
	for _, k := range keys {
		if k.Active {
			continue
		}
		if err := os.Remove(filepath.Join(dir, k.Selector+".pem")); err != nil {
			return gone, fmt.Errorf("dkim: %w", err)
		}
		gone = append(gone, k.Selector)
	}
	delete(ks.cache, strings.ToLower(domain))
	return gone, nil
}

// Remove deletes every key of domain (the domain was removed).
func (ks *KeyStore) Remove(domain string) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	dir, err := ks.domainDir(domain)
	if err != nil {
		return err
	}
	delete(ks.cache, strings.ToLower(domain))
	return os.RemoveAll(dir)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("dkim: %s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkim: %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim: %s: unsupported key type %T", path, k)
	}
	return signer, nil
}

// writeFileSync writes a file under a temporary name, syncs it and renames
// it into place.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dkim: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dkim: %w", err)
	}
	return nil
}
