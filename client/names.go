package client

import (
	"github.com/sealgate/sealgate/crypto/cpu"
	"github.com/sealgate/sealgate/crypto/seal"
)

type kemID = seal.KEMID

func parseKEM(s string) (seal.KEMID, error) { return seal.ParseKEM(s) }

func parseAEAD(s string) (seal.AEADID, error) {
	a, err := cpu.ParseAEAD(s)
	if err != nil {
		return 0, err
	}
	return seal.AEADFromCPU(a)
}
