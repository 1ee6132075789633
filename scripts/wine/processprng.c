/* bcryptprimitives.dll for Wine 8.0, which lacks it: Rust std (>= 1.78) imports ProcessPrng
 * from it, and a test exe without it exits with status 53 before printing anything.
 * ProcessPrng fills a buffer with random bytes; RtlGenRandom (advapi32 SystemFunction036)
 * does the same. Only for running tests under Wine; never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
