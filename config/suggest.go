package config

import (
	"reflect"
	"strings"
)

// suggest returns the key of the same table nearest to the unknown key
// at path (dotted, as the decoder reports it), or "" when none is close:
// "connect_timout" suggests connect_timeout.
func suggest(path string) string {
	parts := strings.Split(path, ".")
	t := tableType(parts[:len(parts)-1])
	if t == nil {
		return ""
	}
	bad, best, bestDist := parts[len(parts)-1], "", 3
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "-" {
			continue
		}
		if d := editDistance(bad, key); d < bestDist {
			best, bestDist = key, d
		}
	}
	return best
}

// tableType is the struct a table path decodes into: pool.NAME.health is
// Health, and so on; nil for a path stickylb has no table for.
func tableType(table []string) reflect.Type {
	switch {
	case len(table) == 1 && table[0] == "global":
		return reflect.TypeOf(Global{})
	case len(table) == 1 && table[0] == "admin":
		return reflect.TypeOf(Admin{})
	case len(table) == 1 && table[0] == "cluster":
		return reflect.TypeOf(Cluster{})
	case len(table) == 2 && table[0] == "listener":
		return reflect.TypeOf(Listener{})
	case len(table) == 2 && table[0] == "pool":
		return reflect.TypeOf(Pool{})
	case len(table) == 3 && table[0] == "pool":
		return map[string]reflect.Type{"affinity": reflect.TypeOf(Affinity{}), "health": reflect.TypeOf(Health{}),
			"limits": reflect.TypeOf(Limits{}), "outlier": reflect.TypeOf(Outlier{})}[table[2]]
	case len(table) == 4 && table[0] == "pool" && table[2] == "check":
		return reflect.TypeOf(Check{})
	case len(table) == 4 && table[0] == "pool" && table[2] == "backend":
		return reflect.TypeOf(Backend{})
	}
	return nil
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
