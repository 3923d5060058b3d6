package ws

import (
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies, err := parseProxies([]string{"10.0.0.0/8", "192.168.1.5", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{proxies: proxies}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "203.0.113.7:5000", "", "203.0.113.7"},
		{"untrusted peer's header is ignored", "203.0.113.7:5000", "1.2.3.4", "203.0.113.7"},
		{"trusted proxy", "10.1.2.3:5000", "198.51.100.9", "198.51.100.9"},
		{"chain of trusted proxies", "10.1.2.3:5000", "198.51.100.9, 192.168.1.5", "198.51.100.9"},
		{"spoofed left entries are not believed", "10.1.2.3:5000", "6.6.6.6, 198.51.100.9", "198.51.100.9"},
		{"trusted proxy, no header", "10.1.2.3:5000", "", "10.1.2.3"},
		{"ipv6 loopback proxy", "[::1]:5000", "198.51.100.10", "198.51.100.10"},
		{"garbage hop", "10.1.2.3:5000", "not-an-ip", "not-an-ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := s.clientIP(r); got != tt.want {
				t.Fatalf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := parseProxies([]string{"nonsense"}); err == nil {
		t.Fatal("a bad trusted_proxies entry was accepted")
	}
}
