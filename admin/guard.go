//go:build linux

package admin

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// RequestHeader must be present on every changing call. A browser sends a
// custom header to another origin only after a CORS preflight, which this
// API never grants, so no web page can make a changing call; stickylb ctl
// and scripts add it with one -H.
const RequestHeader = "X-Stickylb-Request"

// hostAllowed says whether a request's Host names this API: an IP
// address, localhost, or a name the operator listed in admin.hosts. Any
// other name is how a DNS-rebinding page reaches a loopback service, so it
// is refused before any handler runs, reads included.
func (a *API) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if _, err := netip.ParseAddr(host); err == nil || strings.EqualFold(host, "localhost") {
		return true
	}
	return slices.ContainsFunc(a.opts.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// checkChange refuses a changing call that a browser could have been made
// to send from another site: one without RequestHeader, a POST whose body
// is not JSON, or one whose Origin is not this API's own.
func checkChange(r *http.Request) (int, error) {
	if r.Header.Get(RequestHeader) == "" {
		return http.StatusForbidden, fmt.Errorf("changing calls need the header %s: 1 (stickylb ctl sends it)", RequestHeader)
	}
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return http.StatusUnsupportedMediaType, errors.New("changing calls need Content-Type: application/json")
		}
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return http.StatusForbidden, fmt.Errorf("cross-origin call from %q refused", o)
		}
	}
	return 0, nil
}
