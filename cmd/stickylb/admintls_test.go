//go:build linux

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths; the certificate is its own CA.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stickylb admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// The admin API over HTTPS with the token asked for reads too: ctl
// reaches it with the CA and the token; without the CA it refuses the
// certificate, without the token it is refused (but for /readyz, which
// keepalived calls), and plain HTTP gets nothing.
func TestAdminTLSAndTokenForReads(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	token := filepath.Join(dir, "admin.token")
	os.WriteFile(token, []byte("0123456789abcdef0123456789\n"), 0o600)
	cfg := strings.Replace(labConfig(ports, bs, ""), "[admin]\n", "[admin]\ntoken_for_reads = true\ntoken_file = \""+token+
		"\"\ntls_cert_file = \""+cert+"\"\ntls_key_file = \""+key+"\"\n", 1)
	p := startBinary(t, nil, "run", "-c", writeConfig(t, cfg))
	base := "https://" + p.adminAddr()
	ctl := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"ctl", "--admin"}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := ctl(base, "--cacert", cert, "--token-file", token, "backends"); code != 0 || !strings.Contains(out, "cas1") {
		t.Fatalf("ctl over HTTPS with CA and token: exit %d\n%s", code, out)
	}
	if code, out := ctl(base, "--token-file", token, "backends"); code == 0 || !strings.Contains(out, "certificate") {
		t.Fatalf("ctl without the CA: exit %d\n%s", code, out)
	}
	if code, out := ctl(base, "--cacert", cert, "backends"); code == 0 || !strings.Contains(out, "token") {
		t.Fatalf("a read without the token: exit %d\n%s", code, out)
	}
	lbtest.Eventually(t, 5*time.Second, "ready without the token", func() bool {
		code, _ := ctl(base, "--cacert", cert, "readyz")
		return code == 0
	})
	if code, out := ctl("http://"+p.adminAddr(), "--token-file", token, "backends"); code == 0 {
		t.Fatalf("plain HTTP to the HTTPS admin listener answered:\n%s", out)
	}
}

// ctl -c takes the admin address, token and certificate from a config
// file's [admin], as the unit's ExecReload does; a reload of a file the
// balancer refuses exits 1 with the file, line and key, so systemctl
// reload fails with the reason (it ran kill -HUP and said success).
func TestCtlConfigReload(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte("0123456789abcdef0123456789\n"), 0o600)
	admin := lbtest.FreeAddr(t, "127.0.0.1")
	good := strings.Replace(labConfig(ports, bs, ""), "[admin]\nlisten = \"127.0.0.1:0\"\n", "[admin]\nlisten = \""+admin+
		"\"\ntoken_file = \"admin.token\"\ntls_cert_file = \""+filepath.Base(cert)+"\"\ntls_key_file = \""+filepath.Base(key)+"\"\n", 1)
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(good), 0o644)
	p := startBinary(t, nil, "run", "-c", path)
	p.adminAddr()
	ctl := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"ctl", "-c", path, "reload"}, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := ctl(); code != 0 {
		t.Fatalf("ctl -c %s reload of a good file: exit %d\n%s", path, code, out)
	}
	os.WriteFile(path, []byte(good+"frobnicate = 1\n"), 0o644) // an unknown key in the last table
	code, out := ctl()
	if code != 1 || !strings.Contains(out, "lb.toml:16: pool.cas.backend.cas1.frobnicate: unknown key") {
		t.Fatalf("ctl -c reload of a refused file: exit %d, want 1 naming file, line and key:\n%s", code, out)
	}
}
