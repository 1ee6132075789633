#!/usr/bin/env bash
# Regenerates tests/fixtures/pfx: ICP-Brasil-like A1 certificates (a test CA, e-CNPJ and e-CPF
# with SubjectAltName otherNames) in the PKCS#12 variants offices have. Needs OpenSSL 3.
# Only for making fixtures: CertHub itself never runs OpenSSL.
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/pfx"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p "$out"

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/C=BR/O=ICP-Brasil Teste/CN=AC CertHub Teste" 2>/dev/null

# $1 name, $2 subject CN, $3 SAN section body (otherName lines), $4 key size
issue() {
  cat > "$1.cnf" <<CNF
[ext]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = @alt
[alt]
$3
CNF
  openssl req -newkey "rsa:$4" -nodes -keyout "$1.key" -out "$1.csr" -subj "/C=BR/O=ICP-Brasil/CN=$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
    -extfile "$1.cnf" -extensions ext -out "$1.pem" 2>/dev/null
}

# e-CNPJ, PrintableString values (the standard's choice), CN "NAME:CNPJ".
issue ecnpj "EMPRESA X LTDA:11222333000181" "otherName.1 = 2.16.76.1.3.4;PRINTABLESTRING:01011980529982247250000000000000000000000000000SSPSP
otherName.2 = 2.16.76.1.3.2;PRINTABLESTRING:MARIA RESPONSAVEL
otherName.3 = 2.16.76.1.3.3;PRINTABLESTRING:11222333000181
otherName.4 = 2.16.76.1.3.7;PRINTABLESTRING:000000000000" 2048

# e-CNPJ with OCTET STRING values and a CNPJ whose check digits fail.
issue ecnpj_octet "PADARIA BOA:11222333000182" "otherName.1 = 2.16.76.1.3.4;OCTETSTRING:01011980529982247250000000000000000000000000000SSPSP
otherName.2 = 2.16.76.1.3.2;OCTETSTRING:JOAO DONO
otherName.3 = 2.16.76.1.3.3;OCTETSTRING:11222333000182" 2048

# e-CPF, UTF8String values (seen in the wild).
issue ecpf "JOSÉ DA SILVA:52998224725" "otherName.1 = 2.16.76.1.3.1;UTF8String:02021975529982247250000000000000000000000000000SSPSP
otherName.2 = 2.16.76.1.3.6;UTF8String:000000000000
otherName.3 = 2.16.76.1.3.5;UTF8String:0000000000000000000" 3072

# OpenSSL 3 default: AES-256-CBC, PBKDF2, SHA-256 MAC; with the CA in the chain.
openssl pkcs12 -export -inkey ecnpj.key -in ecnpj.pem -certfile ca.pem -passout pass:1234 -out "$out/ecnpj-aes.pfx"
# Legacy: RC2-40 / 3DES, SHA-1 MAC.
openssl pkcs12 -export -legacy -inkey ecnpj_octet.key -in ecnpj_octet.pem -passout pass:abc123 -out "$out/ecnpj-octet-legacy.pfx"
# Non-ASCII password.
openssl pkcs12 -export -inkey ecpf.key -in ecpf.pem -passout "pass:sénha-ção" -out "$out/ecpf-utf8.pfx"
# No MAC at all.
openssl pkcs12 -export -nomac -inkey ecpf.key -in ecpf.pem -passout pass:nomac123 -out "$out/ecpf-nomac.pfx"
# Empty password.
openssl pkcs12 -export -inkey ecnpj.key -in ecnpj.pem -passout pass: -out "$out/ecnpj-empty-password.pfx"
# Certificate only, no private key.
openssl pkcs12 -export -nokeys -in ecnpj.pem -passout pass:1234 -out "$out/ecnpj-nokey.pfx"
# Renewal: the same CNPJ, a later notAfter (supersedes ecnpj-aes.pfx).
issue ecnpj_renewed "EMPRESA X LTDA:11222333000181" "otherName.1 = 2.16.76.1.3.4;PRINTABLESTRING:01011980529982247250000000000000000000000000000SSPSP
otherName.2 = 2.16.76.1.3.2;PRINTABLESTRING:MARIA RESPONSAVEL
otherName.3 = 2.16.76.1.3.3;PRINTABLESTRING:11222333000181" 2048
openssl x509 -req -in ecnpj_renewed.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 730 \
  -extfile ecnpj_renewed.cnf -extensions ext -out ecnpj_renewed.pem 2>/dev/null
openssl pkcs12 -export -inkey ecnpj_renewed.key -in ecnpj_renewed.pem -passout pass:1234 -out "$out/ecnpj-renewed.pfx"
# Java keytool .p12 (AES-256, PBKDF2-SHA256, 10000 iterations), and one holding two private keys.
if command -v keytool >/dev/null 2>&1; then
  rm -f "$out/keytool-aes.p12" "$out/two-keys.p12"
  keytool -importkeystore -srckeystore "$out/ecnpj-aes.pfx" -srcstoretype pkcs12 -srcstorepass 1234 \
    -destkeystore "$out/keytool-aes.p12" -deststoretype pkcs12 -deststorepass chave-java -noprompt
  for alias in um dois; do
    keytool -genkeypair -alias "$alias" -keyalg RSA -keysize 2048 -dname "CN=$alias:11222333000181" \
      -validity 365 -storetype pkcs12 -keystore "$out/two-keys.p12" -storepass senha123 -keypass senha123
  done
fi
# SHA-1 thumbprints (what Windows shows) for the tests.
for f in ecnpj ecnpj_octet ecpf ecnpj_renewed; do
  printf '%s %s\n' "$f" "$(openssl x509 -in "$f.pem" -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :)"
done > "$out/thumbprints.txt"
ls -l "$out"
