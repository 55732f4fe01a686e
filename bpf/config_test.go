package bpf

import (
	"net/netip"
	"strings"
	"testing"
)

func TestSteerBindings(t *testing.T) {
	tests := []struct {
		name    string
		dest    string
		in      []SteerConfig
		want    []Binding
		wantErr string
	}{
		{
			name: "design example",
			dest: "api",
			in:   []SteerConfig{{Prefix: "0.0.0.0/0", Ports: []int{443}}, {Prefix: "::/0", Ports: []int{443, 8443}}},
			want: []Binding{
				{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 443, Dest: "api"},
				{Prefix: netip.MustParsePrefix("::/0"), Port: 443, Dest: "api"},
				{Prefix: netip.MustParsePrefix("::/0"), Port: 8443, Dest: "api"},
			},
		},
		{name: "udp", dest: "dns", in: []SteerConfig{{Prefix: "192.0.2.0/24", Ports: []int{53}, Proto: "udp"}},
			want: []Binding{{Proto: "udp", Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 53, Dest: "dns"}}},
		{name: "bad prefix", dest: "api", in: []SteerConfig{{Prefix: "0.0.0.0/0", Ports: []int{1}}, {Prefix: "nope", Ports: []int{1}}}, wantErr: `steer[1].prefix: "nope" is not a CIDR prefix`},
		{name: "host bits", dest: "api", in: []SteerConfig{{Prefix: "192.0.2.1/24", Ports: []int{1}}}, wantErr: "steer[0].prefix: 192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)"},
		{name: "port range", dest: "api", in: []SteerConfig{{Prefix: "::/0", Ports: []int{443, 70000}}}, wantErr: "steer[0].ports[1]: 70000 is not a port (1-65535)"},
		{name: "no ports", dest: "api", in: []SteerConfig{{Prefix: "::/0"}}, wantErr: "steer[0].ports: must list at least one port"},
		{name: "bad proto", dest: "api", in: []SteerConfig{{Prefix: "::/0", Ports: []int{1}, Proto: "icmp"}}, wantErr: `steer[0].proto: "icmp" is not tcp or udp`},
		{name: "no dest", dest: "", in: nil, wantErr: "dest: must name a listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SteerBindings(tc.dest, tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("binding %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestInterfaceConfig(t *testing.T) {
	tests := []struct {
		name      string
		c         InterfaceConfig
		wantErr   string
		wantBurst uint32
	}{
		{name: "defaults", c: InterfaceConfig{Name: "eth0"}},
		{name: "design example", c: InterfaceConfig{Name: "eth0", Mode: "auto", SynRate: 200, SynBurst: 400}, wantBurst: 400},
		{name: "burst defaults to twice the rate", c: InterfaceConfig{Name: "eth0", SynRate: 50}, wantBurst: 100},
		{name: "generic", c: InterfaceConfig{Name: "eth0.100", Mode: "generic"}},
		{name: "no name", c: InterfaceConfig{}, wantErr: "name:"},
		{name: "long name", c: InterfaceConfig{Name: "a-very-long-interface"}, wantErr: "name:"},
		{name: "bad mode", c: InterfaceConfig{Name: "eth0", Mode: "fast"}, wantErr: `mode: "fast" is not auto, native or generic`},
		{name: "burst without rate", c: InterfaceConfig{Name: "eth0", SynBurst: 3}, wantErr: "syn_burst: set without syn_rate"},
		{name: "rate too high", c: InterfaceConfig{Name: "eth0", SynRate: 2_000_000}, wantErr: "syn_rate:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.c.Burst(); got != tc.wantBurst {
				t.Errorf("Burst() = %d, want %d", got, tc.wantBurst)
			}
		})
	}
}
