package pki

import (
	"crypto/x509"
)

// ReadCertificatesFile reads a PEM file of certificates (a CA bundle), with
// the same bounds as the profile and CA files.
func ReadCertificatesFile(path string) ([]*x509.Certificate, error) {
	return readCertsPEM(path)
}

// WriteCertificatesFile writes certificates as PEM (0644: certificates are
// public), replacing the file atomically.
func WriteCertificatesFile(path string, certs []*x509.Certificate) error {
	return writeFileAtomic(path, encodeCertsPEM(certs), 0o644)
}
