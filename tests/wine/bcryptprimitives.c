/* bcryptprimitives.dll for the Wine test prefix only (never shipped): Rust's std imports ProcessPrng from it for
 * its random keys since Rust 1.78; Windows 10 and later and Wine 9 have it, but the Wine 8 of Debian 12 does not,
 * so every Rust program there fails to start (rust-lang/rust pull 121337). This forwards it to BCryptGenRandom.
 * scripts/test.sh builds it with mingw-w64 into the prefix's system32. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size) {
    while (size > 0) {
        ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG))) {
            return FALSE;
        }
        data += chunk;
        size -= chunk;
    }
    return TRUE;
}
