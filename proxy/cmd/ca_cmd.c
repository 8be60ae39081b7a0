/* `xmppscope ca init|show [--ca-dir DIR]`. */
#include "proxy/cmd/ca_cmd.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "inspect/error.h"
#include "inspect/print.h"
#include "proxy/ca.h"

static void usage(FILE *f)
{
    fputs("usage: xmppscope ca init [--ca-dir DIR]\n"
          "       xmppscope ca show [--ca-dir DIR]\n"
          "\n"
          "Manage the certificate authority that signs the certificates xmppscope shows to\n"
          "clients in place of the real server's.\n"
          "\n"
          "  init          create the CA (ca.crt and ca.key) unless it already exists\n"
          "  show          print the CA certificate's path, fingerprint and validity, and how\n"
          "                to make clients trust it\n"
          "  --ca-dir DIR  the CA directory (default $XDG_CONFIG_HOME/xmppscope, else\n"
          "                ~/.config/xmppscope)\n"
          "  -h, --help    print this help\n",
          f);
}

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "xmppscope ca: %s%s%s\nTry `xmppscope ca --help`.\n", what,
            arg != NULL ? ": " : "", arg != NULL ? arg : "");
    return 2;
}

static void format_time(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(buf, cap, "(unknown)");
}

/* Prints what identifies the CA; `verbose` adds the validity and the trust instructions. */
static int print_ca(const xs_ca *ca, int verbose)
{
    char fp[XS_CA_FINGERPRINT_LEN];
    char subject[256];
    const char *path = xs_ca_cert_path(ca);

    if (xs_ca_fingerprint(ca, fp, sizeof(fp)) != 0) {
        fprintf(stderr, "xmppscope ca: cannot compute the CA fingerprint\n");
        return 1;
    }
    xs_ca_subject(ca, subject, sizeof(subject)); /* a truncated subject is still useful */
    printf("Certificate:  %s\n", path);
    printf("Private key:  %s (keep it secret)\n", xs_ca_key_path(ca));
    xs_term_printf(stdout, "Subject:      %s\n", subject); /* from the file */
    printf("SHA-256:      %s\n", fp);
    if (!verbose)
        return 0;

    time_t not_before, not_after, now = time(NULL);
    char from[64], to[64];
    if (xs_ca_validity(ca, &not_before, &not_after) != 0) {
        fprintf(stderr, "xmppscope ca: cannot read the validity of %s\n", path);
        return 1;
    }
    format_time(not_before, from, sizeof(from));
    format_time(not_after, to, sizeof(to));
    printf("Valid:        %s to %s%s\n", from, to,
           now > not_after    ? " (EXPIRED: remove ca.crt and ca.key and run `xmppscope ca init`)"
           : now < not_before ? " (NOT YET VALID: check the clock)"
                              : "");
    printf("\n"
           "Clients accept the certificates xmppscope shows them only if they trust this CA.\n"
           "Anyone who holds ca.key can impersonate any server to a client that trusts it:\n"
           "trust it only on test machines and accounts, and remove it when done.\n"
           "\n"
           "  slixmpp      pass ca_certs=\"%s\" to the client (xmpp.ca_certs = ...)\n"
           "  Debian, Ubuntu (system store, used by Dino, Gajim, Profanity and most others):\n"
           "               sudo cp %s /usr/local/share/ca-certificates/xmppscope.crt\n"
           "               sudo update-ca-certificates\n"
           "               undo: sudo rm /usr/local/share/ca-certificates/xmppscope.crt &&\n"
           "                     sudo update-ca-certificates --fresh\n"
           "  Gajim        uses the system store; or accept the certificate in the dialog it\n"
           "               shows on connecting, after checking that it is issued by this CA\n"
           "  Psi, Psi+    use the system store; or copy the file into the certs folder of\n"
           "               Psi's data directory (e.g. ~/.local/share/psi/certs/)\n"
           "  Conversations and other Android clients: copy the file to the device and install\n"
           "               it in Settings > Security > Encryption & credentials > Install a\n"
           "               certificate > CA certificate; Conversations also offers to trust an\n"
           "               unknown certificate when it connects\n"
           "  openssl      openssl s_client -starttls xmpp -CAfile %s ...\n",
           path, path, path);
    return 0;
}

int xs_ca_cmd_main(int argc, char **argv)
{
    const char *cmd = NULL;
    const char *dir = NULL;
    char default_dir[PATH_MAX];
    xs_ca *ca = NULL;
    xs_diag diag;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--ca-dir") == 0) {
            if (i + 1 >= argc)
                return usage_error("--ca-dir needs a directory", NULL);
            dir = argv[++i];
        } else if (strncmp(a, "--ca-dir=", 9) == 0) {
            dir = a + 9;
        } else if (a[0] == '-') {
            return usage_error("unknown option", a);
        } else if (cmd == NULL) {
            cmd = a;
        } else {
            return usage_error("unexpected argument", a);
        }
    }
    if (cmd == NULL)
        return usage_error("missing command (init or show)", NULL);
    if (strcmp(cmd, "init") != 0 && strcmp(cmd, "show") != 0)
        return usage_error("unknown command (init or show expected)", cmd);
    if (dir != NULL && dir[0] == '\0')
        return usage_error("--ca-dir needs a directory", NULL);
    if (dir == NULL) {
        if (xs_ca_default_dir(default_dir, sizeof(default_dir), &diag) != 0) {
            xs_term_printf(stderr, "xmppscope ca: %s\n", diag.text);
            return 2;
        }
        dir = default_dir;
    }

    rc = xs_ca_open(dir, strcmp(cmd, "init") == 0, &ca, &diag);
    if (rc != 0) {
        xs_term_printf(stderr, "xmppscope ca: %s\n", diag.text);
        return rc == XS_EINVAL ? 2 : 1; /* a directory or file refused is a configuration error */
    }
    if (strcmp(cmd, "init") == 0) {
        printf(xs_ca_created(ca) ? "Created a new CA in %s\n" : "A CA already exists in %s\n", dir);
        rc = print_ca(ca, 0);
        if (rc == 0)
            printf("Run `xmppscope ca show%s%s` to see how to make clients trust it.\n",
                   dir == default_dir ? "" : " --ca-dir ", dir == default_dir ? "" : dir);
    } else {
        rc = print_ca(ca, 1);
    }
    xs_ca_free(ca);
    return rc;
}
