package daemon

import "os"

func osGetpid() int { return os.Getpid() }
