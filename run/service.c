/* SPDX-License-Identifier: MIT */
/*
 * The preload's service thread: the control socket (--ctl, the JSON dialect
 * of ramfold-vmm's: one object per line each way, {"execute":..,
 * "arguments":{..},"id":..} answered with {"return":..} or {"error":{"class",
 * "desc"}}; vmm/core/json.c is compiled in) and the Prometheus text
 * (--metrics-file rewritten every second, --metrics-port served on
 * 127.0.0.1). One thread polls all of them and an eventfd that stops it.
 *
 * Each of them that cannot start (the socket path is a live socket of
 * another process, a port taken) is logged once and left out: the program
 * runs on. A stale socket (its process was killed) is unlinked at start;
 * the socket and the metrics file are unlinked at exit.
 *
 * Every statistics call of the preload is in this file (write_memory,
 * write_dedup, write_swap, the metrics text).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/json.h"
#include "core/util.h"
#include "ctl/wire.h"
#include "preload.h"

enum { MAX_CLIENTS = 8, LINE_MAX_BYTES = 64 * 1024 };

static struct {
	int ctl_fd, http_fd, stop_fd;
	pthread_t thread;
	bool running;
	struct {
		int fd;
		char *buf;
		size_t len;
	} cl[MAX_CLIENTS];
} sv = {.ctl_fd = -1, .http_fd = -1, .stop_fd = -1};

/* ---- statistics ---------------------------------------------------------- */

struct rollup {
	uint64_t rss, pss, pss_anon, pss_file, anon, swap;
};

/* /proc/self/smaps_rollup: what the kernel charges the process. */
static void read_rollup(struct rollup *r)
{
	char line[256];
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	memset(r, 0, sizeof(*r));
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		static const struct {
			const char *key;
			size_t off;
		} k[] = {
		    {"Rss:", offsetof(struct rollup, rss)},
		    {"Pss:", offsetof(struct rollup, pss)},
		    {"Pss_Anon:", offsetof(struct rollup, pss_anon)},
		    {"Pss_File:", offsetof(struct rollup, pss_file)},
		    {"Anonymous:", offsetof(struct rollup, anon)},
		    {"Swap:", offsetof(struct rollup, swap)},
		};
		for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
			size_t n = strlen(k[i].key);
			unsigned long long kb;

			if (!strncmp(line, k[i].key, n) && sscanf(line + n, "%llu", &kb) == 1)
				*(uint64_t *)((char *)r + k[i].off) = kb << 10;
		}
	}
	fclose(f);
}

static void write_memory(struct jbuf *jb)
{
	struct rf_vm_stats st = {.size = sizeof(st)};
	struct rf_vm_breakdown bd = {.size = sizeof(bd)};
	struct rollup r;

	read_rollup(&r);
	jb_obj_open(jb);
	jb_kv_str(jb, "name", rf_vm_name(rr.vm));
	jb_kv_u64(jb, "adopted", rr.adopted_bytes);
	jb_kv_u64(jb, "regions", rf_vm_nr_regions(rr.vm));
	jb_kv_u64(jb, "kernel-ksm-ranges", rr.kernel_ranges);
	jb_kv_u64(jb, "kernel-ksm-bytes", rr.kernel_bytes);
	jb_kv_u64(jb, "discards", atomic_load(&rr.discards));
	jb_kv_u64(jb, "discarded", atomic_load(&rr.discarded_bytes));
	jb_kv_u64(jb, "releases", atomic_load(&rr.releases));
	if (!rf_vm_stats(rr.vm, &st)) {
		wire_vm_stats(jb, &st);
	}
	if (!rf_vm_breakdown(rr.vm, &bd)) {
		jb_key(jb, "breakdown");
		jb_obj_open(jb);
		jb_kv_u64(jb, "private", bd.private_bytes);
		jb_kv_u64(jb, "untouched", bd.untouched_bytes);
		jb_kv_u64(jb, "shared", bd.shared_bytes);
		jb_kv_u64(jb, "zero", bd.zero_bytes);
		jb_kv_u64(jb, "ballooned", bd.ballooned_bytes);
		jb_kv_u64(jb, "free-reported", bd.free_reported_bytes);
		jb_kv_u64(jb, "swapped-file", bd.swapped_file_bytes);
		jb_kv_u64(jb, "swapped-compressed", bd.swapped_compressed_bytes);
		jb_kv_u64(jb, "drift", bd.drift_bytes);
		jb_kv_u64(jb, "unmapped", bd.unmapped_bytes);
		jb_kv_u64(jb, "shared-resident", bd.shared_resident_bytes);
		jb_kv_u64(jb, "shared-fair", bd.shared_fair_bytes);
		jb_kv_u64(jb, "compressed-host", bd.compressed_host_bytes);
		jb_kv_u64(jb, "host", bd.host_bytes);
		jb_obj_close(jb);
	}
	jb_key(jb, "process");
	jb_obj_open(jb);
	jb_kv_u64(jb, "rss", r.rss);
	jb_kv_u64(jb, "pss", r.pss);
	jb_kv_u64(jb, "pss-anon", r.pss_anon);
	jb_kv_u64(jb, "pss-file", r.pss_file);
	jb_kv_u64(jb, "anon", r.anon);
	jb_kv_u64(jb, "swap", r.swap);
	jb_obj_close(jb);
	jb_obj_close(jb);
}

static void write_dedup(struct jbuf *jb)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};

	jb_obj_open(jb);
	jb_kv_str(jb, "mode", rf_dedup_mode_name(rr.opts.dedup));
	jb_kv_bool(jb, "paused", !rr.dedup_attached);
	if (!rf_dedup_stats(rr.engine, &st))
		wire_dedup_stats(jb, &st, true);
	jb_obj_close(jb);
}

static void write_swap(struct jbuf *jb)
{
	struct rf_swap_stats st = {.size = sizeof(st)};

	jb_obj_open(jb);
	jb_kv_str(jb, "vm", rf_vm_name(rr.vm));
	jb_kv_bool(jb, "enabled", rr.swap_on);
	if (!rf_vm_swap_stats(rr.vm, &st))
		wire_swap_stats(jb, &st);
	jb_obj_close(jb);
}

/* The library's Prometheus text plus the process's own gauges; NULL on
 * failure. */
static char *metrics_text(void)
{
	size_t cap = 64 * 1024;
	struct rollup r;
	char *buf = NULL;
	long need;

	for (int tries = 0; tries < 3; tries++) {
		free(buf);
		buf = malloc(cap + 512);
		if (!buf)
			return NULL;
		need = rf_metrics_format(rr.engine, buf, cap);
		if (need < 0) {
			free(buf);
			return NULL;
		}
		if ((size_t)need < cap)
			break;
		cap = (size_t)need + 4096;
	}
	read_rollup(&r);
	snprintf(buf + strlen(buf), 512,
		 "# HELP ramfold_run_process_bytes The wrapped process's memory (smaps_rollup).\n"
		 "# TYPE ramfold_run_process_bytes gauge\n"
		 "ramfold_run_process_bytes{vm=\"%s\",kind=\"rss\"} %" PRIu64 "\n"
		 "ramfold_run_process_bytes{vm=\"%s\",kind=\"pss\"} %" PRIu64 "\n"
		 "ramfold_run_adopted_bytes{vm=\"%s\"} %" PRIu64 "\n",
		 rf_vm_name(rr.vm), r.rss, rf_vm_name(rr.vm), r.pss, rf_vm_name(rr.vm),
		 rr.adopted_bytes);
	return buf;
}

static void write_metrics_file(void)
{
	static bool warned, told;
	char tmp[4200];
	char *text = metrics_text();
	FILE *f;

	if (!text)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", rr.opts.metrics_file);
	f = fopen(tmp, "we");
	if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, rr.opts.metrics_file)) {
		if (!warned)
			rr_log("--metrics-file %s: %s (not written; retried each second)",
			       rr.opts.metrics_file, strerror(errno));
		warned = true;
	} else if (!told) {
		rr_tell_cleaner(RR_MADE_METRICS);
		told = true;
	}
	free(text);
}

static void serve_http(int fd)
{
	char req[1024];
	char *body;
	ssize_t n = recv(fd, req, sizeof(req) - 1, 0);

	if (n <= 0)
		return;
	req[n] = 0;
	body = (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET / ", 6)) ? metrics_text()
										  : NULL;
	wire_http_reply(fd, body);
	free(body);
}

/* ---- control commands ---------------------------------------------------- */

/* "none" or a size, as ramfold-vmm's set-swap takes them. */
static int size_or_none(const struct json *args, const char *key, uint64_t *out)
{
	const char *s = json_get_str(args, key);

	if (s && !strcmp(s, "none")) {
		*out = RF_SWAP_NO_TARGET;
		return 0;
	}
	return json_get_size(args, key, out);
}

static int set_swap(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	uint64_t resident = 0, cap = 0;
	bool has_r = args && json_get(args, "resident"), has_c = args && json_get(args, "cap");
	const char *vm = args ? json_get_str(args, "vm") : NULL;
	int e;

	if (vm && strcmp(vm, rf_vm_name(rr.vm))) {
		snprintf(err, errlen, "set-swap: no VM named \"%s\" (this one is \"%s\")", vm,
			 rf_vm_name(rr.vm));
		return -1;
	}
	if (!has_r && !has_c) {
		snprintf(err, errlen, "set-swap: give resident=SIZE|none and/or cap=SIZE|none");
		return -1;
	}
	if (has_r && size_or_none(args, "resident", &resident)) {
		snprintf(err, errlen, "set-swap: resident must be a size (e.g. 384M) or none");
		return -1;
	}
	if (has_c && size_or_none(args, "cap", &cap)) {
		snprintf(err, errlen, "set-swap: cap must be a size (e.g. 1G) or none");
		return -1;
	}
	if (has_r && (e = rf_vm_set_swap_target(rr.vm, resident))) {
		snprintf(err, errlen, "set-swap: %s: %s", rf_vm_name(rr.vm), strerror(-e));
		return -1;
	}
	if (has_c && (e = rf_vm_set_swap_cap(rr.vm, cap))) {
		snprintf(err, errlen, "set-swap: %s: %s", rf_vm_name(rr.vm), strerror(-e));
		return -1;
	}
	if (has_r)
		rr.swap_on = resident != RF_SWAP_NO_TARGET;
	write_swap(ret);
	return 0;
}

/*
 * set-dedup: "run": true releases a scanner held by --dedup-paused (the VM
 * is attached then, so nothing of it was scanned before) at the configured
 * budgets; "rate": N sets N pages/s over all scanner threads (releasing too),
 * 0 = back to the configured budgets. There is no "run": false: a VM once
 * attached cannot be detached, and a rate is the way to slow the scanner.
 * "huge": "split"|"keep"|"split-cold" sets how transparent huge pages are
 * treated (rf_dedup_set_huge) before the rest, so that a scanner released in
 * the same request never sees the old mode; alone, it releases nothing.
 * Every argument is checked before any takes effect.
 */
static int set_dedup(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	const struct json *run = args ? json_get(args, "run") : NULL;
	const struct json *rate = args ? json_get(args, "rate") : NULL;
	const struct json *huge = args ? json_get(args, "huge") : NULL;
	enum rf_dedup_huge hmode = RF_DEDUP_HUGE_SPLIT;
	uint64_t pps = 0;
	int e = 0;

	if (!run && !rate && !huge) {
		snprintf(err, errlen,
			 "set-dedup: give run=true and/or rate=PAGES_PER_SEC and/or "
			 "huge=split|keep|split-cold");
		return -1;
	}
	if (run && (run->type != JSON_BOOL || !run->boolean)) {
		snprintf(err, errlen,
			 "set-dedup: run must be true (a released scanner is slowed with rate, "
			 "not held again)");
		return -1;
	}
	if (rate && json_get_u64(args, "rate", &pps)) {
		snprintf(err, errlen,
			 "set-dedup: rate must be a whole number of pages per second (0 = "
			 "the configured budgets)");
		return -1;
	}
	if (huge && parse_dedup_huge(json_get_str(args, "huge"), &hmode)) {
		if (huge->type == JSON_STRING)
			snprintf(err, errlen, "set-dedup: huge \"%s\": expected " DEDUP_HUGE_NAMES,
				 json_get_str(args, "huge"));
		else
			snprintf(err, errlen,
				 "set-dedup: huge must be a string: " DEDUP_HUGE_NAMES);
		return -1;
	}
	if (huge && (e = rf_dedup_set_huge(rr.engine, hmode))) {
		snprintf(err, errlen, "set-dedup: huge %s: %s%s", rf_dedup_huge_name(hmode),
			 strerror(-e),
			 e == -EOPNOTSUPP ? " here (the log says why): huge pages stay split" : "");
		return -1;
	}
	if (run || rate) {
		pthread_mutex_lock(&rr.lock);
		if (!rr.dedup_attached) {
			e = rf_dedup_add_vm(rr.vm);
			if (!e) {
				rr.dedup_attached = true;
				rr_log("dedup: released by set-dedup");
			}
		}
		pthread_mutex_unlock(&rr.lock);
		if (!e)
			e = rf_dedup_set_rate(rr.engine, pps);
		if (e) {
			snprintf(err, errlen, "set-dedup: %s: %s", rf_vm_name(rr.vm), strerror(-e));
			return -1;
		}
	}
	rf_dedup_scan_now(rr.engine);
	jb_obj_open(ret);
	if (run || rate) {
		jb_kv_bool(ret, "run", true);
		jb_kv_u64(ret, "rate", pps);
	}
	if (huge)
		jb_kv_str(ret, "huge", rf_dedup_huge_name(hmode));
	jb_obj_close(ret);
	return 0;
}

/* The read-only commands, in wire_cmd's form. */
static int query_memory(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	(void)args, (void)err, (void)errlen;
	write_memory(ret);
	return 0;
}

static int query_dedup(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	(void)args, (void)err, (void)errlen;
	write_dedup(ret);
	return 0;
}

static int query_swap(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	(void)args, (void)err, (void)errlen;
	write_swap(ret);
	return 0;
}

static const struct wire_cmd commands[] = {
    {"query-memory", "the VM's page states and breakdown, and the process's Pss", query_memory},
    {"query-dedup", "dedup engine stats", query_dedup},
    {"set-dedup",
     "set-dedup [run=true] [rate=PAGES_PER_SEC, 0 = configured budgets] "
     "[huge=split|keep|split-cold]",
     set_dedup},
    {"set-swap", "set-swap [resident=SIZE|none] [cap=SIZE|none]", set_swap},
    {"query-swap", "swapped bytes and faults", query_swap},
};

/* One request: every command calls into the library, so the whole of it
 * runs as the preload's own (rr_lib_enter: its libc calls pass through). */
static void execute(const char *line, size_t len, struct jbuf *out)
{
	rr_lib_enter();
	wire_execute(line, len, commands, sizeof(commands) / sizeof(commands[0]), out);
	rr_lib_leave();
}

static void client_close(int i)
{
	close(sv.cl[i].fd);
	free(sv.cl[i].buf);
	sv.cl[i].fd = -1;
	sv.cl[i].buf = NULL;
	sv.cl[i].len = 0;
}

/* Read what the client sent; answer every complete line. */
static void client_read(int i)
{
	char chunk[4096];
	ssize_t n = recv(sv.cl[i].fd, chunk, sizeof(chunk), 0);
	char *nl;

	if (n <= 0) {
		client_close(i);
		return;
	}
	if (sv.cl[i].len + (size_t)n > LINE_MAX_BYTES) {
		static const char big[] = "{\"error\":{\"class\":\"GenericError\",\"desc\":\"line "
					  "over 64 KiB\"}}\n";

		(void)!send(sv.cl[i].fd, big, strlen(big), MSG_NOSIGNAL);
		client_close(i);
		return;
	}
	{
		char *b = realloc(sv.cl[i].buf, sv.cl[i].len + (size_t)n + 1);

		if (!b) {
			client_close(i);
			return;
		}
		sv.cl[i].buf = b;
	}
	memcpy(sv.cl[i].buf + sv.cl[i].len, chunk, (size_t)n);
	sv.cl[i].len += (size_t)n;
	while (sv.cl[i].fd >= 0 && (nl = memchr(sv.cl[i].buf, '\n', sv.cl[i].len))) {
		size_t ll = (size_t)(nl - sv.cl[i].buf);
		struct jbuf out;

		jb_init(&out);
		if (ll)
			execute(sv.cl[i].buf, ll, &out);
		if (ll && jb_str(&out)) {
			(void)!send(sv.cl[i].fd, jb_str(&out), out.len, MSG_NOSIGNAL);
			(void)!send(sv.cl[i].fd, "\n", 1, MSG_NOSIGNAL);
		}
		jb_free(&out);
		memmove(sv.cl[i].buf, nl + 1, sv.cl[i].len - ll - 1);
		sv.cl[i].len -= ll + 1;
	}
}

static void *service(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p[3 + MAX_CLIENTS];
		int n = 0, who[MAX_CLIENTS];
		int nc = 0;

		p[n++] = (struct pollfd){.fd = sv.stop_fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = sv.ctl_fd, .events = POLLIN};
		p[n++] = (struct pollfd){.fd = sv.http_fd, .events = POLLIN};
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (sv.cl[i].fd >= 0) {
				who[nc++] = i;
				p[n++] = (struct pollfd){.fd = sv.cl[i].fd, .events = POLLIN};
			}
		if (poll(p, (nfds_t)n, rr.opts.metrics_file ? 1000 : -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (rr.opts.metrics_file) {
			rr_lib_enter();
			write_metrics_file();
			rr_lib_leave();
		}
		if (p[1].revents & POLLIN) {
			int c = accept4(sv.ctl_fd, NULL, NULL, SOCK_CLOEXEC);
			int slot = -1;

			for (int i = 0; i < MAX_CLIENTS && c >= 0; i++)
				if (sv.cl[i].fd < 0) {
					slot = i;
					break;
				}
			if (slot >= 0)
				sv.cl[slot].fd = c;
			else if (c >= 0)
				close(c);
		}
		if (p[2].revents & POLLIN) {
			int c = accept4(sv.http_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c >= 0) {
				rr_lib_enter();
				serve_http(c);
				rr_lib_leave();
				close(c);
			}
		}
		for (int k = 0; k < nc; k++)
			if (p[3 + k].revents)
				client_read(who[k]);
	}
	return NULL;
}

void rr_service_start(void)
{
	int err;

	for (int i = 0; i < MAX_CLIENTS; i++)
		sv.cl[i].fd = -1;
	if (rr.opts.ctl) {
		sv.ctl_fd = wire_unix_listen(rr.opts.ctl, SOCK_STREAM, 0, 0);
		if (sv.ctl_fd >= 0)
			rr_tell_cleaner(RR_MADE_CTL);
		if (sv.ctl_fd < 0) {
			rr_log("--ctl %s: %s: no control socket", rr.opts.ctl,
			       sv.ctl_fd == -EADDRINUSE ? "in use by another process"
							: strerror(-sv.ctl_fd));
			sv.ctl_fd = -1;
			if (rr.opts.dedup_paused)
				rr_log(
				    "--dedup-paused: nothing can release the scanner: dedup stays "
				    "paused");
		}
	}
	if (rr.opts.metrics_port) {
		sv.http_fd = wire_http_listen(rr.opts.metrics_port, 0);
		if (sv.http_fd < 0) {
			rr_log("--metrics-port %d: %s: no metrics server", rr.opts.metrics_port,
			       strerror(-sv.http_fd));
			sv.http_fd = -1;
		}
	}
	if (sv.ctl_fd < 0 && sv.http_fd < 0 && !rr.opts.metrics_file)
		return;
	sv.stop_fd = eventfd(0, EFD_CLOEXEC);
	err = sv.stop_fd < 0 ? errno : pthread_create(&sv.thread, NULL, service, NULL);
	if (err) {
		rr_log("service thread: %s: no control socket or metrics", strerror(err));
		rr_service_stop();
		return;
	}
	sv.running = true;
}

void rr_service_stop(void)
{
	uint64_t one = 1;

	if (sv.running) {
		(void)!write(sv.stop_fd, &one, sizeof(one));
		pthread_join(sv.thread, NULL);
		sv.running = false;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (sv.cl[i].fd >= 0)
			client_close(i);
	if (sv.ctl_fd >= 0) {
		close(sv.ctl_fd);
		unlink(rr.opts.ctl);
	}
	if (sv.http_fd >= 0)
		close(sv.http_fd);
	if (sv.stop_fd >= 0)
		close(sv.stop_fd);
	if (rr.opts.metrics_file)
		unlink(rr.opts.metrics_file);
	sv.ctl_fd = sv.http_fd = sv.stop_fd = -1;
}
