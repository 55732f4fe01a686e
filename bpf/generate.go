package bpf

// The eBPF objects are compiled by bpf2go (clang 14 or later) and the output is committed, so building
// sealgate needs no clang. Regenerate with `go generate ./bpf/...` (or `make -C bpf`) after changing a .c
// or .h file.

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -tags linux -type steer_key -type steer_value -type steer_dest_name steer steer.c -- -I./include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -tags linux -type block_key -type block_value -type rate_config -type bucket_key -type bucket -type counter_key guard guard.c -- -I./include
