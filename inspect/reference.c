/* The reference-library switch: see reference.h. */
#include "inspect/reference.h"

#include <stdlib.h>
#include <string.h>

bool xs_reference_mode(void)
{
    const char *v = getenv(XS_REFERENCE_ENV);

    /* Read at creation time, not cached: a test may set it between two parsers. */
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}
