package authn

import (
	"crypto/x509"
	"net/http"

	"github.com/sealgate/sealgate/appliance/reqctx"
)

// mtlsMethod takes the identity from the client certificate. Only a chain
// the listener verified against its client_ca counts: a certificate merely
// presented (VerifiedChains empty) is treated as no credential at all.
type mtlsMethod struct{}

func (mtlsMethod) authenticate(r *http.Request) (*reqctx.Identity, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.TLS.VerifiedChains) == 0 {
		return nil, errAbsent
	}
	return CertIdentity(r.TLS.PeerCertificates[0]), nil
}

// CertIdentity describes a verified client certificate: subject and issuer
// distinguished names, and claims cn, ou, dns, email, uri, ip and sans (all
// SANs) for authorization rules.
func CertIdentity(c *x509.Certificate) *reqctx.Identity {
	var dns, email, uri, ip, sans []any
	for _, v := range c.DNSNames {
		dns = append(dns, v)
	}
	for _, v := range c.EmailAddresses {
		email = append(email, v)
	}
	for _, v := range c.URIs {
		uri = append(uri, v.String())
	}
	for _, v := range c.IPAddresses {
		ip = append(ip, v.String())
	}
	sans = append(append(append(append(sans, dns...), email...), uri...), ip...)
	ou := make([]any, 0, len(c.Subject.OrganizationalUnit))
	for _, v := range c.Subject.OrganizationalUnit {
		ou = append(ou, v)
	}
	subject := c.Subject.String()
	return &reqctx.Identity{
		Method:  MethodMTLS,
		Subject: subject,
		Issuer:  c.Issuer.String(),
		Claims: map[string]any{
			"sub": subject, "cn": c.Subject.CommonName, "ou": ou,
			"dns": dns, "email": email, "uri": uri, "ip": ip, "sans": sans,
		},
	}
}
