/*
 * wrk-no-resume.c — an LD_PRELOAD shim that makes wrk do a full TLS handshake
 * on every connection (used by scripts/bench-proxy.sh, scenario `handshake`).
 *
 * wrk closes a TLS connection with SSL_shutdown + SSL_clear and reuses the
 * SSL object, which keeps the session: the next connection offers it and
 * every server that supports resumption (nginx, haproxy and keygate all do,
 * by tickets or a session cache) does a resumed handshake. Dropping the
 * session before SSL_clear makes every handshake a full one (certificate,
 * signature, key exchange), whatever the server offers.
 *
 *   cc -shared -fPIC -O2 -o wrk-no-resume.so wrk-no-resume.c -ldl
 *   LD_PRELOAD=$PWD/wrk-no-resume.so wrk ...
 *
 * No OpenSSL headers needed: SSL is only passed through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

int SSL_clear(SSL *s) {
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, SSL_SESSION *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    if (set_session) set_session(s, NULL);
    return real_clear ? real_clear(s) : 0;
}
