#!/usr/bin/env python3
"""Independent check of the CertHub payload envelope v1 (docs/protocol.md).

Uses Python `cryptography` (>= 48, OpenSSL's HPKE), not the Rust `hpke` crate, so the vector
proves that another RFC 9180 implementation agrees with ours.

  python3 scripts/hpke-test-vector.py generate > tests/fixtures/hpke/payload-v1.json
      Writes a fresh vector (a new recipient key and ephemeral key each run); the Rust test
      `crypto::envelope::tests::opens_the_python_test_vector` opens it.

  python3 scripts/hpke-test-vector.py open SECRET_KEY_HEX JOB_ID DEVICE_ID ENC_B64 CIPHERTEXT_B64
      Opens what the Rust side sealed (e.g. print a SealedPayload from a test) and prints the
      plaintext JSON: the reverse direction of the interoperability check.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
ENC_LEN = 32  # DHKEM(X25519) encapsulated key; OpenSSL's single-shot output is enc || ciphertext

JOB_ID = "7f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
DEVICE_ID = "2b9e8d7c-6f5a-4b3c-9d2e-1f0a9b8c7d6e"


def info(job_id: str, device_id: str) -> bytes:
    return f"certhub-payload-v1:{job_id}:{device_id}".encode("utf-8")


def generate() -> None:
    sk = X25519PrivateKey.generate()
    sk_raw = sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pk_raw = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # A short fake PFX: the envelope does not look inside it.
    pfx = b"\x30\x82\x01\x00certhub-test-vector-pfx\x00\xff"
    plaintext = json.dumps(
        {"pfx_base64": base64.b64encode(pfx).decode("ascii"), "password": "Senh@ 123 ção"},
        ensure_ascii=False,
    ).encode("utf-8")
    out = SUITE.encrypt(plaintext, sk.public_key(), info=info(JOB_ID, DEVICE_ID))
    enc, ciphertext = out[:ENC_LEN], out[ENC_LEN:]
    # The vector must open here too before it is worth committing.
    assert SUITE.decrypt(out, sk, info=info(JOB_ID, DEVICE_ID)) == plaintext
    vector = {
        "generator": f"scripts/hpke-test-vector.py (Python cryptography {__import__('cryptography').__version__})",
        "suite": {"mode": "base", "kem_id": "0x0020", "kdf_id": "0x0001", "aead_id": "0x0003"},
        "recipient_secret_key_hex": sk_raw.hex(),
        "recipient_public_key_base64": base64.b64encode(pk_raw).decode("ascii"),
        "job_id": JOB_ID,
        "device_id": DEVICE_ID,
        "info": info(JOB_ID, DEVICE_ID).decode("utf-8"),
        "aad": "",
        "plaintext": plaintext.decode("utf-8"),
        "pfx_base64": base64.b64encode(pfx).decode("ascii"),
        "password": "Senh@ 123 ção",
        "enc": base64.b64encode(enc).decode("ascii"),
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
    }
    json.dump(vector, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def open_(sk_hex: str, job_id: str, device_id: str, enc_b64: str, ct_b64: str) -> None:
    sk = X25519PrivateKey.from_private_bytes(bytes.fromhex(sk_hex))
    data = base64.b64decode(enc_b64, validate=True) + base64.b64decode(ct_b64, validate=True)
    sys.stdout.write(SUITE.decrypt(data, sk, info=info(job_id, device_id)).decode("utf-8") + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        generate()
    elif sys.argv[1:2] == ["open"] and len(sys.argv) == 7:
        open_(*sys.argv[2:])
    else:
        sys.exit(__doc__)
