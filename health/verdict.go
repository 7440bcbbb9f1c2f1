package health

import "sync"

// Verdicts combines several checks of the same targets into one verdict
// per target: a target is up only while every check that has reported on
// it says up. A check that has not reported yet does not count, so the
// first verdicts decide at once, as Checker does for one check.
type Verdicts struct {
	mu sync.Mutex
	by map[string]map[string]bool // target -> check -> up
}

// Set records check's verdict on target and returns the combined one.
func (v *Verdicts) Set(target, check string, up bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.by == nil {
		v.by = map[string]map[string]bool{}
	}
	if v.by[target] == nil {
		v.by[target] = map[string]bool{}
	}
	v.by[target][check] = up
	for _, ok := range v.by[target] {
		if !ok {
			return false
		}
	}
	return true
}
