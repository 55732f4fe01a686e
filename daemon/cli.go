package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sealgate/sealgate/appliance/blocker"
	"github.com/sealgate/sealgate/daemon/config"
)

// command is one CLI subcommand.
type command struct {
	name    string
	usage   string // arguments after the name
	summary string
	run     func(cli *cli, args []string) error
}

type cli struct {
	stdout, stderr io.Writer
	fs             *flag.FlagSet
	socket         *string
	jsonOut        *bool
}

var commands []command

// errUsage makes Main print the command's usage and exit 1.
var errUsage = errors.New("usage")

func init() {
	commands = []command{
		{"run", "[--config FILE]", "run the daemon", cmdRun},
		{"demo", "[--dir DIR] [--listen ADDR]", "run everything on an embedded default, no config needed", cmdDemo},
		{"check-config", "FILE", "validate a config file; exit 1 with file:line: message on error", cmdCheckConfig},
		{"status", "[--json]", "version, uptime, CPU features, listeners, steering, interfaces", cmdStatus},
		{"stats", "[--json]", "counters", cmdStats},
		{"reload", "", "re-read the config and certificates (same as SIGHUP)", cmdReload},
		{"block", "add PREFIX [--ttl DURATION] [--reason TEXT] | del PREFIX | list [--json]", "the source blocklist", cmdBlock},
		{"version", "", "version, commit, Go version", cmdVersion},
	}
	commands = append(commands, extraCommands()...)
}

// Main runs the CLI with args (without the program name) and returns the
// exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 1
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("sealgate "+c.name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		cl := &cli{stdout: stdout, stderr: stderr, fs: fs}
		fs.Usage = func() {
			fmt.Fprintf(stderr, "usage: sealgate %s %s\n\n%s\n", c.name, c.usage, c.summary)
			if hasFlags(fs) {
				fmt.Fprintln(stderr, "\nflags:")
				fs.PrintDefaults()
			}
		}
		err := c.run(cl, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fs.Usage()
			return 1
		}
		fmt.Fprintf(stderr, "sealgate %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "sealgate: unknown command %q (run 'sealgate help')\n", args[0])
	return 1
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "sealgate %s: protects HTTP APIs from data leakage\n\nusage: sealgate COMMAND [flags]\n\ncommands:\n", Version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nEvery command takes --help. Commands that talk to a running daemon find its admin\nsocket from --socket, then $SEALGATE_SOCKET, then "+DefaultSocket+".")
}

// clientFlags adds --socket (and --json when asked).
func (c *cli) clientFlags(withJSON bool) {
	c.socket = c.fs.String("socket", "", "admin socket (default $SEALGATE_SOCKET or "+DefaultSocket+")")
	if withJSON {
		c.jsonOut = c.fs.Bool("json", false, "print JSON")
	}
}

func (c *cli) client() *Client { return NewClient(ResolveSocket(*c.socket)) }

// parse parses flags anywhere among the arguments and returns the others.
func (c *cli) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, err
		}
		args = c.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdRun(c *cli, args []string) error {
	path := c.fs.String("config", config.DefaultPath, "config file")
	cleanup := c.fs.Bool("cleanup", false, "remove all pinned eBPF state (steering, guard, blocklist) and exit")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *cleanup {
		return runCleanup(*path, c.stdout)
	}
	d, err := New(Options{Load: func() (*config.Config, error) { return config.Load(*path) }, Signals: true})
	if err != nil {
		return err
	}
	return d.Run(context.Background())
}

func cmdDemo(c *cli, args []string) error {
	dir := c.fs.String("dir", defaultDemoDir(), "directory for the demo's certificate, config, keys, socket and log")
	listen := c.fs.String("listen", "127.0.0.1:8443", "engine address")
	if _, err := c.parse(args); err != nil {
		return err
	}
	bin := "sealgate"
	if exe, err := os.Executable(); err == nil {
		if rel, err := filepath.Rel(mustGetwd(), exe); err == nil && !strings.HasPrefix(rel, "..") {
			bin = "./" + rel
		} else {
			bin = exe
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Demo(ctx, DemoOptions{Dir: *dir, Listen: *listen, Out: c.stdout, Binary: bin})
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}

func defaultDemoDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "sealgate-demo")
	}
	return filepath.Join(os.TempDir(), "sealgate-demo")
}

func cmdCheckConfig(c *cli, args []string) error {
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage
	}
	cfg, err := config.Load(pos[0])
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			fmt.Fprintln(c.stderr, es.Error())
			return fmt.Errorf("%d error(s)", len(es))
		}
		return err
	}
	if err := checkExtensions(cfg); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s: ok (%d listener(s), %d route(s), %d interface(s))\n", pos[0], len(cfg.Listeners), len(cfg.Routes), len(cfg.Interfaces))
	return nil
}

func cmdStatus(c *cli, args []string) error {
	c.clientFlags(true)
	if _, err := c.parse(args); err != nil {
		return err
	}
	var st Status
	if err := c.client().Do("GET", "/v1/status", nil, &st); err != nil {
		return err
	}
	if *c.jsonOut {
		return c.printJSON(st)
	}
	fmt.Fprint(c.stdout, FormatStatus(st))
	return nil
}

func cmdStats(c *cli, args []string) error {
	c.clientFlags(true)
	if _, err := c.parse(args); err != nil {
		return err
	}
	var st Stats
	if err := c.client().Do("GET", "/v1/stats", nil, &st); err != nil {
		return err
	}
	if *c.jsonOut {
		return c.printJSON(st)
	}
	fmt.Fprint(c.stdout, FormatStats(st))
	return nil
}

func cmdReload(c *cli, args []string) error {
	c.clientFlags(false)
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := c.client().Do("POST", "/v1/reload", nil, nil); err != nil {
		return fmt.Errorf("reload refused, previous config still serving: %w", err)
	}
	fmt.Fprintln(c.stdout, "reloaded")
	return nil
}

func cmdBlock(c *cli, args []string) error {
	c.clientFlags(true)
	ttl := c.fs.Duration("ttl", 0, "how long the entry lasts (0: until removed)")
	reason := c.fs.String("reason", "manual", "why, shown by 'block list'")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errUsage
	}
	cl := c.client()
	switch {
	case pos[0] == "add" && len(pos) == 2:
		body := map[string]string{"prefix": pos[1], "reason": *reason}
		if *ttl > 0 {
			body["ttl"] = ttl.String()
		}
		var res struct{ Prefix string }
		if err := cl.Do("POST", "/v1/blocklist", body, &res); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "blocked %s", res.Prefix)
		if *ttl > 0 {
			fmt.Fprintf(c.stdout, " for %s", ttl)
		}
		fmt.Fprintln(c.stdout)
	case pos[0] == "del" && len(pos) == 2:
		if err := cl.Do("DELETE", "/v1/blocklist?prefix="+urlQueryEscape(pos[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "unblocked %s\n", pos[1])
	case pos[0] == "list" && len(pos) == 1:
		var res struct {
			Entries []blocker.Entry `json:"entries"`
		}
		if err := cl.Do("GET", "/v1/blocklist", nil, &res); err != nil {
			return err
		}
		if *c.jsonOut {
			return c.printJSON(res)
		}
		sort.Slice(res.Entries, func(i, j int) bool { return res.Entries[i].Prefix.String() < res.Entries[j].Prefix.String() })
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tEXPIRES\tSOURCE\tREASON")
		for _, e := range res.Entries {
			exp := "never"
			if !e.Expires.IsZero() {
				exp = e.Expires.Format(time.RFC3339) + " (in " + time.Until(e.Expires).Round(time.Second).String() + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Prefix, exp, e.Source, e.Reason)
		}
		tw.Flush()
	default:
		return errUsage
	}
	return nil
}

func cmdVersion(c *cli, args []string) error {
	if _, err := c.parse(args); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "sealgate %s (commit %s, %s %s/%s)\n", Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
