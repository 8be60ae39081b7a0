/* The proxy's side of the web inspector (web_ctl.c), for proxy.c. */
#ifndef XS_PROXY_WEB_CTL_H
#define XS_PROXY_WEB_CTL_H

#include "proxy/web.h"

struct xs_proxy;

/* Send and intercept on the proxy's live sessions; ctx is the proxy. */
xs_web_control xs_web_ctl_of(struct xs_proxy *p);

#endif
