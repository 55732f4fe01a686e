package daemon

import (
	"net/http"

	"github.com/sealgate/sealgate/appliance"
	"github.com/sealgate/sealgate/daemon/config"
)

// buildSpec turns the config into the engine's Spec, building each route's
// policy stages.
func (d *Daemon) buildSpec(cfg *config.Config) (_ appliance.Spec, err error) {
	d.ext.beginStages()
	defer func() {
		if err != nil {
			d.ext.abortStages()
		}
	}()
	spec := appliance.Spec{
		TLS12Suites: d.profile.TLS12Suites,
		AccessLog:   cfg.Daemon.AccessLog == "stdout",
		// The fast path is on unless the config turns it off.
		DisableFastPath:   cfg.Limits.HTTP1FastPath != nil && !*cfg.Limits.HTTP1FastPath,
		DisableH2FastPath: cfg.Limits.HTTP2FastPath != nil && !*cfg.Limits.HTTP2FastPath,
		Limits: appliance.Limits{
			MaxHeaderBytes:    int(cfg.Limits.MaxHeaderBytes),
			ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout.D(),
			IdleTimeout:       cfg.Limits.IdleTimeout.D(),
			ShutdownTimeout:   cfg.Limits.ShutdownTimeout.D(),
			DialTimeout:       cfg.Limits.DialTimeout.D(),
			UpstreamTimeout:   cfg.Limits.UpstreamTimeout.D(),
			TicketRotation:    cfg.Limits.TicketRotation.D(),
		},
	}
	for _, l := range cfg.Listeners {
		ts := appliance.TLSSpec{
			MinVersion:         config.TLSVersion(l.TLS.MinVersion),
			ClientCA:           l.TLS.ClientCA,
			ClientAuthOptional: l.TLS.ClientAuth == "optional",
		}
		for _, c := range l.TLS.Certs {
			ts.Certs = append(ts.Certs, appliance.CertFiles{Cert: c.Cert, Key: c.Key})
		}
		spec.Listeners = append(spec.Listeners, appliance.ListenerSpec{Name: l.Name, TLS: ts})
	}
	for i, r := range cfg.Routes {
		stages, err := d.routeStages(cfg, i)
		if err != nil {
			return appliance.Spec{}, err
		}
		spec.Routes = append(spec.Routes, appliance.RouteSpec{
			Name:               r.Name,
			Listener:           r.Listener,
			Match:              r.Match,
			Upstream:           r.Upstream,
			UpstreamCA:         r.UpstreamCA,
			UpstreamServerName: r.UpstreamServerName,
			Seal:               appliance.SealMode(r.Seal),
			MaxBody:            int64(r.MaxBody),
			UpstreamTimeout:    r.UpstreamTimeout.D(),
			Stages:             stages,
		})
	}
	return spec, nil
}

// routeStages builds route i's stages in order: policy, validation, WAF, DLP.
func (d *Daemon) routeStages(cfg *config.Config, i int) ([]func(http.Handler) http.Handler, error) {
	return d.ext.stagesFor(d, cfg, i)
}
