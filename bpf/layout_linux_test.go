package bpf

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestLayout checks the hand-written mirrors of sealgate.h against the bpf2go-generated types (which come
// from the compiled objects' BTF): same size, same fields at the same offsets with the same sizes.
func TestLayout(t *testing.T) {
	pairs := []struct {
		name       string
		hand, bpf2 any
	}{
		{"steer_key", steerKey{}, steerSteerKey{}},
		{"steer_value", steerValue{}, steerSteerValue{}},
		{"steer_dest_name", steerDestName{}, steerSteerDestName{}},
		{"block_key", blockKey{}, guardBlockKey{}},
		{"block_value", blockValue{}, guardBlockValue{}},
		{"rate_config", rateConfig{}, guardRateConfig{}},
		{"bucket_key", bucketKey{}, guardBucketKey{}},
		{"bucket", bucket{}, guardBucket{}},
		{"counter_key", counterKey{}, guardCounterKey{}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			h, g := reflect.TypeOf(p.hand), reflect.TypeOf(p.bpf2)
			if h.Size() != g.Size() {
				t.Fatalf("size %d, generated %d", h.Size(), g.Size())
			}
			var gf []reflect.StructField
			for i := range g.NumField() {
				if f := g.Field(i); f.Name != "_" {
					gf = append(gf, f)
				}
			}
			if h.NumField() != len(gf) {
				t.Fatalf("%d fields, generated %d", h.NumField(), len(gf))
			}
			for i, f := range gf {
				hf := h.Field(i)
				if hf.Offset != f.Offset || hf.Type.Size() != f.Type.Size() || hf.Type.Kind() != f.Type.Kind() {
					t.Errorf("field %s at %d (%d bytes, %s), generated %s at %d (%d bytes, %s)",
						hf.Name, hf.Offset, hf.Type.Size(), hf.Type.Kind(), f.Name, f.Offset, f.Type.Size(), f.Type.Kind())
				}
			}
		})
	}
}

// TestEnums checks the Go tables indexed by the C enums against the generated enums.
func TestEnums(t *testing.T) {
	if len(reasonNames) != int(guardGuardReasonGUARD_REASON_MAX) {
		t.Errorf("%d reason names, enum guard_reason has %d", len(reasonNames), guardGuardReasonGUARD_REASON_MAX)
	}
	if int(guardGuardReasonGUARD_DROP_BLOCKLIST) >= len(reasonNames) || reasonNames[guardGuardReasonGUARD_DROP_BLOCKLIST].reason != "blocklist" ||
		reasonNames[guardGuardReasonGUARD_DROP_SYN_RATE].reason != "syn_rate" || reasonNames[guardGuardReasonGUARD_PASS_TCP].reason != "tcp" {
		t.Error("reason names are not in the order of enum guard_reason")
	}
	if steerCounterMax != int(steerSteerCounterSTEER_COUNTERS_MAX) {
		t.Errorf("steerCounterMax %d, enum has %d", steerCounterMax, steerSteerCounterSTEER_COUNTERS_MAX)
	}
}

// TestMapSpecs checks the maps' key and value sizes against the Go types used to read and write them.
func TestMapSpecs(t *testing.T) {
	steer, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	guard, err := loadGuard()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m          string
		key, value uintptr
		maxEntries uint32
	}{
		{"steer_bindings", unsafe.Sizeof(steerKey{}), unsafe.Sizeof(steerValue{}), maxBindings},
		{"steer_sockets", 4, 8, 2 * maxDests},
		{"steer_dests", unsafe.Sizeof(steerDestName{}), 4, maxDests},
		{"steer_counters", 4, 8, steerCounterMax},
		{"guard_blocklist", unsafe.Sizeof(blockKey{}), unsafe.Sizeof(blockValue{}), blocklistMax},
		{"guard_buckets", unsafe.Sizeof(bucketKey{}), unsafe.Sizeof(bucket{}), 65536},
		{"guard_config", 4, unsafe.Sizeof(rateConfig{}), 256},
		{"guard_ports", 2, 1, maxPorts},
		{"guard_counters", unsafe.Sizeof(counterKey{}), 8, 4096},
	} {
		t.Run(tc.m, func(t *testing.T) {
			ms := steer.Maps[tc.m]
			if ms == nil {
				ms = guard.Maps[tc.m]
			}
			if ms == nil {
				t.Fatal("no such map in the objects")
			}
			if uintptr(ms.KeySize) != tc.key || uintptr(ms.ValueSize) != tc.value || ms.MaxEntries != tc.maxEntries {
				t.Errorf("key %d value %d entries %d, Go uses key %d value %d entries %d", ms.KeySize, ms.ValueSize, ms.MaxEntries, tc.key, tc.value, tc.maxEntries)
			}
		})
	}
}
