/* SPDX-License-Identifier: MIT */
/* The ledger module's Prometheus metrics server (metrics_http.c). */
#ifndef VMM_MODULES_METRICS_HTTP_H
#define VMM_MODULES_METRICS_HTTP_H

struct vmm;

/* Listen on 127.0.0.1:@port and serve GET /metrics from a thread, until
 * metrics_http_stop(). Main thread. 0, or -1 after one line (vmm_errorf);
 * metrics_http_stop() still cleans up then. */
int metrics_http_start(struct vmm *vmm, int port);
/* Stop the thread if it runs and close the sockets. Main thread; idempotent. */
void metrics_http_stop(void);

#endif
