//go:build !linux

package daemon

func unmount(string) {}
