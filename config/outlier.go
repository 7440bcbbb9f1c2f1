package config

import "time"

// Outlier is [pool.NAME.outlier]: ejection, in Envoy's manner, of a CAS
// whose real traffic fails (DCE/RPC binds rejected, calls answered with
// faults). A pool ejects nothing unless its file has the table.
type Outlier struct {
	// Enabled says the file has the table; it is not a key.
	Enabled bool `toml:"-"`
	// ConsecutiveFaults ejects after this many calls in a row answered
	// with a fault PDU; 0 turns the rule off. Envoy's consecutive_5xx.
	ConsecutiveFaults int `toml:"consecutive_faults"`
	// ConsecutiveBindRejections ejects after this many binds in a row
	// rejected; 0 turns the rule off.
	ConsecutiveBindRejections int `toml:"consecutive_bind_rejections"`
	// FaultRate ejects when at least this percentage of an interval's
	// calls faulted, once it has MinRequests calls; 0 turns it off.
	// Envoy's failure_percentage_threshold.
	FaultRate   int `toml:"fault_rate"`
	MinRequests int `toml:"min_requests"`
	// Interval is the fault rate's window, and how long a backend must
	// stay out of ejection for its next ejection to be one step shorter.
	Interval Duration `toml:"interval"`
	// EjectionTime is the first ejection's length; the n-th in a row
	// lasts n times as long, at most MaxEjectionTime.
	EjectionTime    Duration `toml:"ejection_time"`
	MaxEjectionTime Duration `toml:"max_ejection_time"`
	// MaxEjectedShare is the percentage of the pool's backends that may
	// be ejected at once (one always may be, unless it is the last that
	// takes new clients).
	MaxEjectedShare int `toml:"max_ejected_share"`
}

// The defaults of [pool.NAME.outlier] are Envoy's, but for the share:
// Envoy's 10% also ejects one backend of any array under twenty, which
// is what a CAS array is.
const (
	DefaultConsecutiveFaults         = 5
	DefaultConsecutiveBindRejections = 5
	DefaultMinRequests               = 50
	DefaultOutlierInterval           = 10 * time.Second
	DefaultEjectionTime              = 30 * time.Second
	DefaultMaxEjectionTime           = 5 * time.Minute
	DefaultMaxEjectedShare           = 10
)

// DefaultOutlier returns a [pool.NAME.outlier] table that sets nothing:
// it is off until the file names it.
func DefaultOutlier() Outlier {
	return Outlier{ConsecutiveFaults: DefaultConsecutiveFaults, ConsecutiveBindRejections: DefaultConsecutiveBindRejections,
		MinRequests: DefaultMinRequests, Interval: Duration{DefaultOutlierInterval}, EjectionTime: Duration{DefaultEjectionTime},
		MaxEjectionTime: Duration{DefaultMaxEjectionTime}, MaxEjectedShare: DefaultMaxEjectedShare}
}

func (o *Outlier) check(v *checker, at string) {
	if !o.Enabled {
		return
	}
	counts := []struct {
		key string
		n   int
	}{{"consecutive_faults", o.ConsecutiveFaults}, {"consecutive_bind_rejections", o.ConsecutiveBindRejections}}
	for _, c := range counts {
		if c.n < 0 || c.n > 100_000 {
			v.errAt(at+"."+c.key, "must be from 0 (off) to 100000, not %d", c.n)
		}
	}
	if o.FaultRate < 0 || o.FaultRate > 100 {
		v.errAt(at+".fault_rate", "must be a percentage from 0 (off) to 100, not %d", o.FaultRate)
	}
	if o.FaultRate > 0 && (o.MinRequests < 1 || o.MinRequests > 1_000_000) {
		v.errAt(at+".min_requests", "must be from 1 to 1000000 calls in an interval before fault_rate judges it, not %d", o.MinRequests)
	}
	if o.ConsecutiveFaults == 0 && o.ConsecutiveBindRejections == 0 && o.FaultRate == 0 {
		v.errAt(at, "every rule is off: set consecutive_faults, consecutive_bind_rejections or fault_rate, or remove the table")
	}
	v.within(at+".interval", o.Interval, 100*time.Millisecond, time.Hour)
	switch {
	case o.EjectionTime.Duration <= 0:
		v.errAt(at+".ejection_time", "must be positive, not %s", o.EjectionTime)
	default:
		v.within(at+".ejection_time", o.EjectionTime, time.Second, 24*time.Hour)
		if o.MaxEjectionTime.Duration < o.EjectionTime.Duration {
			v.errAt(at+".max_ejection_time", "%s is shorter than ejection_time (%s): an ejection lasts from ejection_time to max_ejection_time", o.MaxEjectionTime, o.EjectionTime)
		} else {
			v.within(at+".max_ejection_time", o.MaxEjectionTime, time.Second, 24*time.Hour)
		}
	}
	if o.MaxEjectedShare < 1 || o.MaxEjectedShare > 100 {
		v.errAt(at+".max_ejected_share", "must be a percentage from 1 to 100, not %d", o.MaxEjectedShare)
	}
}
