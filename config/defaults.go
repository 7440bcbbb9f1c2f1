package config

import "time"

// DefaultPath is the config file run and check read without -c: where
// the package installs it.
const DefaultPath = "/etc/stickylb/lb.toml"

// The defaults, in one place. A file is decoded over these values, so a
// key the file does not set keeps its default and a key it sets to 0
// keeps the 0. The example lb.toml and docs/config.md quote them.
const (
	DefaultAdminListen      = "127.0.0.1:9090"
	DefaultDrainTimeout     = 30 * time.Second
	DefaultSnapshotInterval = time.Minute
	DefaultJournalInterval  = time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultConnectRetries   = 2
	DefaultHalfCloseTimeout = time.Minute
	// DefaultKeepalive is the TCP keepalive idle time and interval on
	// both legs. Idle MAPI connections are found dead by it rather than
	// by an idle timeout, which is off by default.
	DefaultKeepalive = 60 * time.Second
	// DefaultTTL outlasts Windows' first keepalive (2 hours), so an idle
	// MAPI session that reconnects still finds its CAS.
	DefaultTTL         = 3 * time.Hour
	DefaultMaxEntries  = 1_000_000
	DefaultIPv4Prefix  = 24
	DefaultIPv6Prefix  = 64
	DefaultInterval    = 2 * time.Second
	DefaultTimeout     = time.Second
	DefaultRise        = 2
	DefaultFall        = 3
	DefaultPassiveFall = 3
	DefaultWeight      = 1
	// DefaultMaxConnsPerClient bounds one client (one IPv4 address, one
	// IPv6 /64) at 30,000 open connections: above what a Unity server
	// with several connections per user needs, and 60,000 descriptors,
	// a sixteenth of the unit's file limit, so one client cannot take
	// the descriptors every other needs (issue 20: one address held
	// 5,000 connections with no limit; by arithmetic it could open about
	// 84,000 to three ports).
	DefaultMaxConnsPerClient = 30_000
	// DefaultNewPinsPerSecond caps new pins per pool: a logon storm of
	// 10,000 users over a minute is under 200 a second, while the flood
	// issue 20 reported (2,500 new addresses in 0.43 s, 5,800/s) no longer pushes out the
	// pins of idle sessions; clients over it are served unpinned.
	DefaultNewPinsPerSecond = 1000
	// DefaultLimitV6Prefix groups IPv6 clients by /64 for the per-client
	// limits: one host or site gets a /64, and addresses within it cost
	// nothing to an attacker.
	DefaultLimitV6Prefix = 64
	DefaultSyncTimeout   = 10 * time.Second
	DefaultSyncInterval  = 30 * time.Second
	// DefaultProxyHeaderTimeout bounds the wait for a PROXY header.
	DefaultProxyHeaderTimeout = 3 * time.Second
	// DefaultPinholeTimeout is how long a port learned from the
	// endpoint mapper outlives its last connection (inspect_dcerpc):
	// Cisco ASA's pinhole timeout at its "low" security level (its
	// default, "medium", is one minute), and longer than the time
	// Outlook takes to reconnect after a dropped connection.
	DefaultPinholeTimeout = 2 * time.Minute
)

// DefaultGlobal returns the [global] settings of a file that sets none.
func DefaultGlobal() Global {
	return Global{DrainTimeout: Duration{DefaultDrainTimeout}, SnapshotInterval: Duration{DefaultSnapshotInterval},
		JournalInterval: Duration{DefaultJournalInterval}}
}

// DefaultCluster returns the [cluster] settings of a file that sets none:
// no cluster.
func DefaultCluster() Cluster {
	return Cluster{SyncTimeout: Duration{DefaultSyncTimeout}, SyncInterval: Duration{DefaultSyncInterval}}
}

// DefaultAdmin returns the [admin] settings of a file that sets none.
func DefaultAdmin() Admin { return Admin{Listen: DefaultAdminListen} }

// DefaultPool returns a [pool.NAME] table that sets nothing.
func DefaultPool() Pool {
	return Pool{
		ConnectTimeout:   Duration{DefaultConnectTimeout},
		ConnectRetries:   DefaultConnectRetries,
		HalfCloseTimeout: Duration{DefaultHalfCloseTimeout},
		Keepalive:        Duration{DefaultKeepalive},
		PassiveFall:      DefaultPassiveFall,
		Affinity: Affinity{IPv4Prefix: DefaultIPv4Prefix, IPv6Prefix: DefaultIPv6Prefix,
			TTL: Duration{DefaultTTL}, MaxEntries: DefaultMaxEntries, NewPinsPerSecond: DefaultNewPinsPerSecond},
		Limits: Limits{MaxConnsPerClient: DefaultMaxConnsPerClient, IPv4Prefix: 32, IPv6Prefix: DefaultLimitV6Prefix},
		Health: Health{Enabled: true, Interval: Duration{DefaultInterval}, Timeout: Duration{DefaultTimeout},
			Rise: DefaultRise, Fall: DefaultFall},
	}
}

// DefaultCheck returns a [pool.NAME.check.NAME] table that sets nothing:
// its timing is the pool's [pool.NAME.health].
func DefaultCheck(h Health) Check {
	return Check{Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
		Method: "GET", Path: "/", Status: StatusRange{200, 399}}
}

// DefaultBackend returns a [pool.NAME.backend.NAME] table that sets only
// its address.
func DefaultBackend() Backend { return Backend{Weight: DefaultWeight} }

// MaxWeight bounds a backend's weight, in lb.toml and at run time.
const MaxWeight = 1000
