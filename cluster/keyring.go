package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// SetKeys makes keys the keyring, keys[0] the key messages are sent
// with, without a restart: a key is changed member by member by adding
// the new one everywhere, then making it first everywhere, then
// removing the old one (docs/cluster.md). A member started without a
// key cannot take one this way.
func (m *Member) SetKeys(keys [][]byte) error {
	kr := m.keyring
	if kr == nil || len(keys) == 0 {
		return errors.New("cluster: encryption is switched on or off only by a restart")
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("cluster keyring: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("cluster keyring: %w", err)
	}
	for _, old := range kr.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := kr.RemoveKey(old); err != nil {
				return fmt.Errorf("cluster keyring: %w", err)
			}
		}
	}
	return nil
}
