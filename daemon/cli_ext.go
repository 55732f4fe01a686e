package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealgate/sealgate/appliance/authn"
	"github.com/sealgate/sealgate/appliance/sealing"
	"github.com/sealgate/sealgate/appliance/waf"
	"github.com/sealgate/sealgate/client"
	"github.com/sealgate/sealgate/daemon/config"
)

// extraCommands are the CLI commands of the subsystems.
func extraCommands() []command {
	return []command{
		{"attach", "IFACE [--mode auto|native|generic]", "attach the XDP guard to an interface", cmdAttach},
		{"detach", "IFACE", "detach the XDP guard from an interface", cmdDetach},
		{"keys", "rotate | list [--json] | hash [KEY] | new", "sealing keys (rotate, list) and API keys (hash, new)", cmdKeys},
		{"curl", "[-X METHOD] [-d DATA] [-H 'Name: value'] [-i] [-k] [--cacert FILE] [--show-wire] URL", "a sealed request from the command line", cmdCurl},
	}
}

func cmdKeys(c *cli, args []string) error {
	c.clientFlags(true)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errUsage
	}
	switch {
	case pos[0] == "rotate" && len(pos) == 1:
		var res struct {
			Key sealing.KeyInfo `json:"key"`
		}
		if err := c.client().Do("POST", "/v1/keys/rotate", nil, &res); err != nil {
			return err
		}
		if *c.jsonOut {
			return c.printJSON(res)
		}
		fmt.Fprintf(c.stdout, "new sealing key id %d (%s); previous keys stay valid for their grace period\n", res.Key.ID, strings.Join(res.Key.KEMs, ", "))
	case pos[0] == "list" && len(pos) == 1:
		var res struct {
			Keys []sealing.KeyInfo `json:"keys"`
		}
		if err := c.client().Do("GET", "/v1/keys", nil, &res); err != nil {
			return err
		}
		if *c.jsonOut {
			return c.printJSON(res)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tKEMS\tAGE\tRETIRES")
		for _, k := range res.Keys {
			retire := "-"
			if !k.RetireAt.IsZero() {
				retire = k.RetireAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", k.ID, k.State, strings.Join(k.KEMs, ","), time.Since(k.Created).Round(time.Second), retire)
		}
		tw.Flush()
	case pos[0] == "hash" && len(pos) <= 2:
		key := ""
		if len(pos) == 2 {
			key = pos[1]
		} else {
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
			if err != nil {
				return err
			}
			key = strings.TrimSpace(string(b))
		}
		if key == "" {
			return errors.New("no key given (pass it as an argument or on stdin)")
		}
		fmt.Fprintln(c.stdout, authn.HashAPIKey(key))
	case pos[0] == "new" && len(pos) == 1:
		key, hash := authn.NewAPIKey()
		fmt.Fprintf(c.stdout, "key:    %s   (give this to the client; it is not stored anywhere)\nsha256: %s   (put this in [route.auth.apikey] keys)\n", key, hash)
	default:
		return errUsage
	}
	return nil
}

func cmdCurl(c *cli, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "--help" {
			c.fs.Usage()
			return flag.ErrHelp
		}
	}
	o, err := client.ParseCurlArgs(args, c.stderr)
	if err != nil {
		return err
	}
	return client.Curl(context.Background(), o, c.stdout, c.stderr)
}

func cmdAttach(c *cli, args []string) error {
	c.clientFlags(true)
	mode := c.fs.String("mode", "auto", "XDP mode: auto (native, else generic), native or generic")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage
	}
	var att struct {
		Interface string `json:"interface"`
		Mode      string `json:"mode"`
		Driver    string `json:"driver"`
		Attached  bool   `json:"attached"`
	}
	if err := c.client().Do("POST", "/v1/interfaces/"+url.PathEscape(pos[0])+"/attach?mode="+url.QueryEscape(*mode), nil, &att); err != nil {
		return err
	}
	if *c.jsonOut {
		return c.printJSON(att)
	}
	if !att.Attached {
		fmt.Fprintf(c.stdout, "guard will attach to %s when it appears\n", pos[0])
		return nil
	}
	fmt.Fprintf(c.stdout, "guard attached to %s (%s mode, driver %s)\n", att.Interface, att.Mode, att.Driver)
	return nil
}

func cmdDetach(c *cli, args []string) error {
	c.clientFlags(false)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errUsage
	}
	if err := c.client().Do("POST", "/v1/interfaces/"+url.PathEscape(pos[0])+"/detach", nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "guard detached from %s\n", pos[0])
	return nil
}

// checkExtensions builds what config validation leaves to the daemon
// because it is slow: each route's WAF rule set (the OWASP CRS at its
// paranoia level with its exclusions).
func checkExtensions(cfg *config.Config) error {
	cache := waf.NewCache()
	for _, r := range cfg.Routes {
		if _, err := waf.New(r.Name, r.WAF, waf.Deps{Engines: cache}); err != nil {
			return err // it names the route and the field
		}
	}
	return nil
}

// runCleanup removes pinned eBPF state: steering, guard links, blocklist.
func runCleanup(path string, w io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		var perr *fs.PathError
		if !errors.As(err, &perr) {
			return err
		}
		// No config file: clean the default location.
		cfg = &config.Config{Daemon: config.Daemon{BPFFS: config.DefaultBPFFS}}
	}
	if err := cleanupEBPF(cfg, slog.New(slog.NewTextHandler(w, nil))); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	fmt.Fprintf(w, "removed pinned eBPF state under %s/sealgate\n", cfg.Daemon.BPFFS)
	return nil
}
