package daemon

import "golang.org/x/sys/unix"

func unmount(path string) { unix.Unmount(path, unix.MNT_DETACH) }
