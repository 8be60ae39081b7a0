/* JID validation (RFC 7622), for the jid-invalid check (inspect/check.h).
 *
 * A JID is [localpart "@"] domainpart ["/" resourcepart]. What is checked, on the JID as it is
 * written in a stanza (no preparation is applied first):
 *   - each part present is 1 to 1023 bytes of valid UTF-8 (RFC 7622 §3.1);
 *   - the localpart holds none of " & ' / : < > @ (§3.3.1), no control character (C0, DEL, C1)
 *     and no space character (U+0020 and the other Unicode spaces), which the PRECIS
 *     IdentifierClass disallows;
 *   - the resourcepart holds no control character (the PRECIS FreeformClass disallows them);
 *   - the domainpart is an IPv4 address, an IPv6 address in brackets, or a domain name whose
 *     labels are 1 to 63 bytes: an ASCII label is letters, digits and hyphens, not at either end
 *     (a final dot is allowed, §3.2); a name with a non-ASCII or "xn--" label goes through
 *     libidn2 (IDNA2008 with UTS #46 non-transitional mapping), which says whether it is a valid
 *     internationalized name.
 * The full PRECIS profiles (RFC 8264/8265: UsernameCaseMapped, OpaqueString) are not checked:
 * no library in Debian implements them. So a JID this accepts may still be refused by a server
 * for a character PRECIS disallows (a symbol in a localpart, say).
 *
 * Cost: linear in the JID, no allocation for an ASCII domain; libidn2 allocates. */
#ifndef XS_INSPECT_JID_H
#define XS_INSPECT_JID_H

#include <stddef.h>

/* Longest part of a JID, in bytes (RFC 7622 §3.1). */
#define XS_JID_PART_MAX 1023

/* Checks the JID s (len bytes, need not be NUL-terminated). Returns 1 when it is valid; 0 when
 * not, with a short English reason (static storage: "empty localpart", "localpart contains '&'")
 * in *why when why is not NULL. */
int xs_jid_valid(const char *s, size_t len, const char **why);

/* Whether s (len bytes) is a valid domainpart (the rules above). */
int xs_jid_domain_valid(const char *s, size_t len, const char **why);

#endif
