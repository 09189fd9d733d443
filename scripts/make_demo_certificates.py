"""Throw-away TLS certificates and SuperNode keys for a local deployment demo (no network).

Writes into ``--out`` (default ``./certificates``):

    ca.crt, ca.key            a self-signed certificate authority (1 day)
    server.pem, server.key    the SuperLink's certificate for 127.0.0.1 / localhost, signed by the CA
    supernode-K, supernode-K.pub   an EC (secp384r1) key pair per SuperNode, OpenSSH format,
                                   as ``flower-supernode --auth-supernode-private-key`` and
                                   ``flwr supernode register`` read them

For a demo on one machine only: real devices need keys made on the device and a certificate
for the SuperLink's real address.

    python scripts/make_demo_certificates.py --out certificates --supernodes 3
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_FOR = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_certificates(out: Path, supernodes: int) -> list[Path]:
    """Write the CA, the SuperLink's certificate and ``supernodes`` key pairs; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("flower-difmaml demo CA"))
        .issuer_name(_name("flower-difmaml demo CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pem_key(ca_key),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
    }
    for k in range(supernodes):
        key = ec.generate_private_key(ec.SECP384R1())
        files[f"supernode-{k}"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        files[f"supernode-{k}.pub"] = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    paths = []
    for name, content in files.items():
        path = out / name
        path.write_bytes(content)
        if name.endswith(".key") or name.startswith("supernode-") and not name.endswith(".pub"):
            path.chmod(0o600)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("certificates"))
    parser.add_argument("--supernodes", type=int, default=3)
    args = parser.parse_args()
    for path in make_certificates(args.out, args.supernodes):
        print(path)


if __name__ == "__main__":
    main()
