package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads, decodes and checks the config file at path.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read config: %s does not exist: give the config file with -c FILE (the package's is %s)", path, DefaultPath)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src)
}

// Parse decodes src (named file in messages) over the defaults and checks
// it. A non-nil error holds every mistake found, each an *Error, joined in
// line order.
//
// The TOML library stops a table at its first value of the wrong type, so
// such a value's line is reported, blanked (the key keeps its default) and
// the file decoded again, until the rest decodes; the checks then run on
// the whole file. A blanked line that breaks the syntax (a value over
// several lines) ends the passes with what was found so far.
func Parse(file string, src []byte) (*Config, error) {
	v := &checker{file: file, lines: locate(src)}
	work := bytes.Clone(src)
	var syntax map[string]any
	for {
		_, err := toml.Decode(string(work), &syntax)
		if err == nil {
			break
		}
		e := decodeError(file, err).(*Error)
		v.errs = append(v.errs, e)
		if !e.twice || !blankDuplicate(&work, e.Line) || len(v.errs) > maxPasses {
			return nil, sorted(v.errs)
		}
	}
	for pass := 0; ; pass++ {
		c, md, errs := decode(file, work)
		if len(errs) == 0 || pass == maxPasses {
			v.errs = append(v.errs, errs...)
			return finish(c, md, v)
		}
		v.errs = append(v.errs, errs...)
		if !blankLines(&work, errs) {
			return nil, sorted(v.errs)
		}
		if _, err := toml.Decode(string(work), &syntax); err != nil {
			return nil, sorted(v.errs)
		}
	}
}

// maxPasses bounds the decode-and-blank passes of one file.
const maxPasses = 64

func finish(c *Config, md toml.MetaData, v *checker) (*Config, error) {
	for _, k := range md.Undecoded() {
		if near := suggest(k.String()); near != "" {
			v.errAt(k.String(), "unknown key; did you mean %s?", near)
			continue
		}
		v.errAt(k.String(), "unknown key; see docs/config.md for the keys stickylb reads")
	}
	c.lines = v.lines
	c.resolvePaths()
	c.check(v)
	c.Admin.checkSocket(v)
	if len(v.errs) > 0 {
		return nil, sorted(v.errs)
	}
	c.keep(v.read)
	return c, nil
}

// sorted joins errs in line order, so a long report reads top to bottom.
func sorted(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int {
		var x, y *Error
		errors.As(a, &x)
		errors.As(b, &y)
		if x == nil || y == nil {
			return 0
		}
		return cmp.Compare(x.Line, y.Line)
	})
	return errors.Join(errs...)
}

// blankDuplicate empties what a table or key written twice defines the
// second time (a table's header and body up to the next header), keeping
// the line count, so that the rest of the file is still checked. It
// reports whether it blanked anything.
func blankDuplicate(src *[]byte, line int) bool {
	lines := bytes.Split(*src, []byte("\n"))
	if line < 1 || line > len(lines) || len(bytes.TrimSpace(lines[line-1])) == 0 {
		return false
	}
	header := bytes.HasPrefix(bytes.TrimSpace(lines[line-1]), []byte("["))
	lines[line-1] = nil
	for i := line; header && i < len(lines) && !bytes.HasPrefix(bytes.TrimSpace(lines[i]), []byte("[")); i++ {
		lines[i] = nil
	}
	*src = bytes.Join(lines, []byte("\n"))
	return true
}

// blankLines empties the lines the errors name, keeping the line count.
// It reports whether it blanked any.
func blankLines(src *[]byte, errs []error) bool {
	lines := bytes.Split(*src, []byte("\n"))
	any := false
	for _, err := range errs {
		var e *Error
		if errors.As(err, &e) && e.Line > 0 && e.Line <= len(lines) && len(lines[e.Line-1]) > 0 {
			lines[e.Line-1] = nil
			any = true
		}
	}
	*src = bytes.Join(lines, []byte("\n"))
	return any
}

// file is a config as first decoded: each named table stays undecoded
// until its defaults are known.
type file struct {
	Global    toml.Primitive            `toml:"global"`
	Admin     toml.Primitive            `toml:"admin"`
	Cluster   toml.Primitive            `toml:"cluster"`
	Listeners map[string]toml.Primitive `toml:"listener"`
	Pools     map[string]toml.Primitive `toml:"pool"`
}

// poolTables is a pool with its checks and backends left undecoded, since
// a check's defaults are the pool's [health] settings.
type poolTables struct {
	Pool
	Checks   map[string]toml.Primitive `toml:"check"`
	Backends map[string]toml.Primitive `toml:"backend"`
	Outlier  toml.Primitive            `toml:"outlier"`
}

// decode decodes src table by table over the defaults and returns the
// decoding errors of every table, one per table at most.
func decode(name string, src []byte) (*Config, toml.MetaData, []error) {
	var f file
	md, err := toml.Decode(string(src), &f)
	if err != nil {
		return &Config{File: name}, md, []error{decodeError(name, err)}
	}
	c := &Config{File: name, Global: DefaultGlobal(), Admin: DefaultAdmin(), Cluster: DefaultCluster(),
		Listeners: map[string]*Listener{}, Pools: map[string]*Pool{}}
	var errs []error
	into := func(p toml.Primitive, v any) bool {
		if err := md.PrimitiveDecode(p, v); err != nil {
			errs = append(errs, decodeError(name, err))
			return false
		}
		return true
	}
	into(f.Global, &c.Global)
	into(f.Admin, &c.Admin)
	into(f.Cluster, &c.Cluster)
	for lname, p := range f.Listeners {
		l := &Listener{Name: lname, ProxyHeaderTimeout: Duration{DefaultProxyHeaderTimeout}, PinholeTimeout: Duration{DefaultPinholeTimeout}}
		into(p, l)
		c.Listeners[lname] = l
	}
	for pname, p := range f.Pools {
		pt := poolTables{Pool: DefaultPool()}
		into(p, &pt)
		pl := &pt.Pool
		pl.Name, pl.Checks, pl.Backends = pname, map[string]*Check{}, map[string]*Backend{}
		if md.IsDefined("pool", pname, "outlier") {
			pl.Outlier = decodeOutlier(md, pname, pt.Outlier, into)
		}
		for cname, cp := range pt.Checks {
			ch := DefaultCheck(pl.Health)
			ch.Name = cname
			into(cp, &ch)
			pl.Checks[cname] = &ch
		}
		for bname, bp := range pt.Backends {
			b := DefaultBackend()
			b.Name = bname
			into(bp, &b)
			pl.Backends[bname] = &b
		}
		c.Pools[pname] = pl
	}
	return c, md, errs
}

// decodeOutlier decodes pool pname's [pool.NAME.outlier] over its
// defaults. Unless the file sets max_ejection_time, it is at least
// ejection_time, as Envoy's default (300s or the base time) is.
func decodeOutlier(md toml.MetaData, pname string, p toml.Primitive, into func(toml.Primitive, any) bool) Outlier {
	o := DefaultOutlier()
	into(p, &o)
	o.Enabled = true
	if !md.IsDefined("pool", pname, "outlier", "max_ejection_time") {
		o.MaxEjectionTime.Duration = max(o.MaxEjectionTime.Duration, o.EjectionTime.Duration)
	}
	return o
}

// resolvePaths makes the file paths in c relative to the config file.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.File)
	for _, p := range []*string{&c.Global.SnapshotFile, &c.Admin.TokenFile, &c.Admin.TLSCertFile, &c.Admin.TLSKeyFile, &c.Admin.Socket, &c.Cluster.SecretFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

var (
	tomlLine    = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)
	tomlDefined = regexp.MustCompile(`^Key '([^']*)' has already been defined\.?$`)
)

// decodeError turns the TOML library's errors into an *Error, in the
// project's own words where the library's would puzzle an operator.
func decodeError(file string, err error) error {
	e := &Error{File: file, Msg: err.Error()}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line, e.Key, e.Msg = pe.Position.Line, pe.LastKey, pe.Message
		if pe.Usage != "" {
			e.Msg += " (" + strings.TrimSpace(pe.Usage) + ")"
		}
	} else if m := tomlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Key, e.Msg = m[2], m[3]
	}
	if m := tomlDefined.FindStringSubmatch(e.Msg); m != nil {
		e.Key = m[1]
		e.Msg = "defined twice: a table or key may appear once in a file; merge the two"
		e.twice = true
	}
	return e
}
