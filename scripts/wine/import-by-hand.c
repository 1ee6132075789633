/* Puts a PFX into CurrentUser MY the way a person does by hand (the import wizard: the
 * certificate with its key, no CertHub mark). For the agent's end-to-end tests under Wine:
 *   import-by-hand.exe FILE.pfx PASSWORD
 * Exit code 0 when a certificate with its key was added. */
#include <windows.h>
#include <wincrypt.h>
#include <stdio.h>
#include <stdlib.h>

int wmain(int argc, wchar_t **argv) {
    if (argc != 3) {
        fwprintf(stderr, L"usage: import-by-hand FILE.pfx PASSWORD\n");
        return 2;
    }
    FILE *f = _wfopen(argv[1], L"rb");
    if (!f) {
        fwprintf(stderr, L"cannot open %ls\n", argv[1]);
        return 2;
    }
    BYTE *data = malloc(1 << 20);
    DWORD size = (DWORD)fread(data, 1, 1 << 20, f);
    fclose(f);
    CRYPT_DATA_BLOB blob = {size, data};
    HCERTSTORE imported = PFXImportCertStore(&blob, argv[2], CRYPT_USER_KEYSET);
    if (!imported) {
        fwprintf(stderr, L"PFXImportCertStore failed: %lu\n", GetLastError());
        return 1;
    }
    HCERTSTORE my = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0,
                                  CERT_SYSTEM_STORE_CURRENT_USER, L"MY");
    if (!my) {
        fwprintf(stderr, L"CertOpenStore failed: %lu\n", GetLastError());
        return 1;
    }
    int added = 0;
    PCCERT_CONTEXT cert = NULL;
    while ((cert = CertEnumCertificatesInStore(imported, cert)) != NULL) {
        DWORD n = 0;
        if (CertGetCertificateContextProperty(cert, CERT_KEY_PROV_INFO_PROP_ID, NULL, &n) &&
            CertAddCertificateContextToStore(my, cert, CERT_STORE_ADD_REPLACE_EXISTING, NULL)) {
            added++;
        }
    }
    CertControlStore(my, 0, CERT_STORE_CTRL_COMMIT, NULL);
    CertCloseStore(my, 0);
    CertCloseStore(imported, 0);
    free(data);
    return added > 0 ? 0 : 1;
}
