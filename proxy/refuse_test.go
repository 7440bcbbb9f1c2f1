//go:build linux

package proxy

import "testing"

// Every Refusal has its rule (termination, level, message), so refuse
// can tell none of them with an empty message or key.
func TestEveryRefusalHasARule(t *testing.T) {
	if len(refusalRules) != len(Refusals) {
		t.Errorf("%d refusal rules for %d refusals", len(refusalRules), len(Refusals))
	}
	for _, why := range Refusals {
		rule, ok := refusalRules[why]
		if !ok || rule.end == "" || rule.msg == "" || rule.peer == "" {
			t.Errorf("refusal %s has no full rule: %+v", why, rule)
		}
	}
	if refusalEnd(RefusedConnect) != EndConnectFailed || refusalEnd(RefusedNoBackend) != EndRefused {
		t.Error("connect-failed or no-backend ends wrongly")
	}
}
