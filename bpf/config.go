package bpf

import (
	"errors"
	"fmt"
	"net/netip"
)

// SteerConfig is one entry of a listener's `steer = [...]` list: new connections to an address in
// Prefix on one of Ports are steered into that listener.
type SteerConfig struct {
	Prefix string `toml:"prefix"` // CIDR, e.g. "0.0.0.0/0", "::/0", "192.0.2.10/32"; an IPv6 prefix covering ::ffff:0:0/96 also matches IPv4
	Ports  []int  `toml:"ports"`  // 1-65535
	Proto  string `toml:"proto"`  // "tcp" (default) or "udp"
}

// SteerBindings validates a listener's steer entries and turns them into bindings to dest. Errors name
// the entry and field, e.g. `steer[1].ports[0]: 70000 is not a port (1-65535)`.
func SteerBindings(dest string, entries []SteerConfig) ([]Binding, error) {
	if err := validDest(dest); err != nil {
		return nil, err
	}
	var out []Binding
	for i, e := range entries {
		if _, err := protoNumber(e.Proto); err != nil {
			return nil, fmt.Errorf("steer[%d].%w", i, err)
		}
		p, err := netip.ParsePrefix(e.Prefix)
		if err != nil {
			return nil, fmt.Errorf("steer[%d].prefix: %q is not a CIDR prefix (e.g. 0.0.0.0/0 or ::/0)", i, e.Prefix)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("steer[%d].prefix: %s has host bits set (did you mean %s?)", i, p, p.Masked())
		}
		if len(e.Ports) == 0 {
			return nil, fmt.Errorf("steer[%d].ports: must list at least one port", i)
		}
		for j, port := range e.Ports {
			if port < 1 || port > 65535 {
				return nil, fmt.Errorf("steer[%d].ports[%d]: %d is not a port (1-65535)", i, j, port)
			}
			out = append(out, Binding{Proto: e.Proto, Prefix: p, Port: uint16(port), Dest: dest})
		}
	}
	return out, nil
}

// InterfaceConfig is one `[[interface]]` table: the guard on an interface.
type InterfaceConfig struct {
	Name     string `toml:"name"`      // interface name, e.g. "eth0"
	Mode     string `toml:"mode"`      // auto (default) | native | generic
	SynRate  uint32 `toml:"syn_rate"`  // new TCP connections per second per source to steered ports; 0: no limit
	SynBurst uint32 `toml:"syn_burst"` // bucket size; 0 with a syn_rate means 2*syn_rate
}

// Validate checks the table; errors name the field.
func (c InterfaceConfig) Validate() error {
	if c.Name == "" || len(c.Name) > 15 {
		return fmt.Errorf("name: %q is not an interface name (1-15 bytes)", c.Name)
	}
	if err := validMode(c.Mode); err != nil {
		return fmt.Errorf("mode: %w", err)
	}
	if c.SynRate == 0 && c.SynBurst != 0 {
		return errors.New("syn_burst: set without syn_rate")
	}
	if c.SynRate > 1_000_000 {
		return fmt.Errorf("syn_rate: %d is above the supported 1000000 per second", c.SynRate)
	}
	return nil
}

// Burst returns the effective bucket size: SynBurst, or 2*SynRate when unset.
func (c InterfaceConfig) Burst() uint32 {
	if c.SynBurst == 0 {
		return 2 * c.SynRate
	}
	return c.SynBurst
}

func validMode(mode string) error {
	switch mode {
	case "", ModeAuto, ModeNative, ModeGeneric:
		return nil
	}
	return fmt.Errorf("%q is not auto, native or generic", mode)
}
