/* libFuzzer target for the PROXY protocol header parser (proxy/proxyproto.c).
 *
 * The input is what a peer sends first. Parsed whole and read the way the proxy reads a socket
 * (the first read, then no more than the parser wants), it must not crash, leak or hang, and:
 * a whole header is never longer than the input or the spec's bounds (107 bytes for v1, 16 +
 * 1024 for v2), and read in pieces it ends exactly where the parse of the whole input says; an
 * incomplete one always wants at least one byte more and never more than the header could still
 * hold; a refusal always says why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inspect/error.h"
#include "proxy/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t used, want;
    xs_pp_info info;
    char why[200];
    why[0] = 0;
    int whole = xs_pp_parse(data, size, &used, &want, &info, why, sizeof(why));
    size_t whole_used = used;
    if (whole == 1) {
        if (used == 0 || used > size)
            abort();
        if (info.version == 1 ? used > XS_PP_V1_MAX : used > XS_PP_V2_HEAD + XS_PP_V2_MAX_LEN)
            abort();
        if (info.has_addr && info.src.ss_family != info.dst.ss_family)
            abort();
    } else if (whole == 0) {
        if (want == 0 || size + want > XS_PP_V2_HEAD + XS_PP_V2_MAX_LEN)
            abort();
    } else if (whole != XS_EPARSE || why[0] == 0) {
        abort();
    }
    /* In pieces, as the proxy reads. */
    size_t have = 0;
    want = XS_PP_FIRST_READ;
    for (;;) {
        size_t take = want < size - have ? want : size - have;
        if (take == 0)
            break;
        have += take;
        int rc = xs_pp_parse(data, have, &used, &want, &info, why, sizeof(why));
        if (rc == 1) {
            /* The whole input begins with this header: it is found at the same end. */
            if (used != have || (whole == 1 && used != whole_used))
                abort();
            break;
        }
        if (rc < 0)
            break;
        if (want == 0)
            abort();
    }
    return 0;
}
