/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/wire.h"

void wire_error(struct jbuf *out, const char *cls, const char *desc, const char *id)
{
	jb_obj_open(out);
	jb_key(out, "error");
	jb_obj_open(out);
	jb_kv_str(out, "class", cls);
	jb_kv_str(out, "desc", desc);
	jb_obj_close(out);
	if (id) {
		jb_key(out, "id");
		jb_raw(out, id);
	}
	jb_obj_close(out);
}

void wire_execute(const char *line, size_t len, const struct wire_cmd *cmds, size_t ncmds,
		  struct jbuf *out)
{
	struct jbuf ret, idb;
	const struct json *id, *args;
	const char *cmd, *id_text = NULL;
	char err[300] = "", desc[320];
	struct json *j;

	jb_init(&ret);
	jb_init(&idb);
	j = json_parse(line, len, err, sizeof(err));
	if (!j) {
		snprintf(desc, sizeof(desc), "malformed JSON: %s", err);
		wire_error(out, "GenericError", desc, NULL);
		goto done;
	}
	id = json_get(j, "id");
	if (id && (id->type == JSON_NUMBER || id->type == JSON_STRING)) {
		if (id->type == JSON_NUMBER)
			jb_raw(&idb, id->str);
		else
			jb_string(&idb, id->str);
		id_text = jb_str(&idb);
	}
	cmd = j->type == JSON_OBJECT ? json_get_str(j, "execute") : NULL;
	args = j->type == JSON_OBJECT ? json_get(j, "arguments") : NULL;
	if (!cmd) {
		wire_error(out, "GenericError", "missing \"execute\" (the command name)", id_text);
		goto done;
	}
	if (args && args->type != JSON_OBJECT) {
		wire_error(out, "GenericError", "\"arguments\" must be an object", id_text);
		goto done;
	}
	if (!strcmp(cmd, "help")) {
		jb_arr_open(&ret);
		for (size_t i = 0; i < ncmds; i++) {
			jb_obj_open(&ret);
			jb_kv_str(&ret, "name", cmds[i].name);
			jb_kv_str(&ret, "help", cmds[i].help);
			jb_obj_close(&ret);
		}
		jb_obj_open(&ret);
		jb_kv_str(&ret, "name", "help");
		jb_kv_str(&ret, "help", "this list");
		jb_obj_close(&ret);
		jb_arr_close(&ret);
		wire_return(out, &ret, id_text);
		goto done;
	}
	for (size_t i = 0; i < ncmds; i++) {
		if (strcmp(cmds[i].name, cmd))
			continue;
		err[0] = 0;
		if (cmds[i].fn(args, &ret, err, sizeof(err)))
			wire_error(out, "GenericError", err[0] ? err : "command failed", id_text);
		else
			wire_return(out, &ret, id_text);
		goto done;
	}
	snprintf(desc, sizeof(desc), "unknown command \"%.64s\" (try \"help\")", cmd);
	wire_error(out, "CommandNotFound", desc, id_text);
done:
	jb_free(&ret);
	jb_free(&idb);
	json_free(j);
}

void wire_return(struct jbuf *out, struct jbuf *ret, const char *id)
{
	jb_obj_open(out);
	jb_key(out, "return");
	jb_raw(out, ret->len ? jb_str(ret) : "{}");
	if (id) {
		jb_key(out, "id");
		jb_raw(out, id);
	}
	jb_obj_close(out);
}

void wire_vm_stats(struct jbuf *jb, const struct rf_vm_stats *st)
{
	jb_kv_u64(jb, "promised", st->promised_bytes);
	jb_kv_u64(jb, "mapped", st->mapped_bytes);
	jb_kv_u64(jb, "resident", st->resident_bytes);
	jb_kv_u64(jb, "resident-anon", st->resident_anon_bytes);
	jb_kv_u64(jb, "resident-file", st->resident_file_bytes);
	jb_kv_u64(jb, "metadata", st->metadata_bytes);
	for (int s = 0; s < RF_PAGE_NSTATES; s++) {
		char key[40];

		snprintf(key, sizeof(key), "%s", rf_page_state_name(s));
		for (char *p = key; *p; p++)
			if (*p == '_' || *p == ' ')
				*p = '-';
		jb_kv_u64(jb, key, st->state_bytes[s]);
	}
}

void wire_swap_stats(struct jbuf *jb, const struct rf_swap_stats *st)
{
	jb_kv_u64(jb, "file-bytes", st->file_bytes);
	jb_kv_u64(jb, "tier-bytes", st->tier_bytes);
	jb_kv_u64(jb, "tier-compressed-bytes", st->tier_compressed_bytes);
	jb_kv_double(jb, "compression-ratio", st->compression_ratio);
	jb_kv_u64(jb, "swap-outs", st->swap_outs);
	jb_kv_u64(jb, "zero-outs", st->zero_outs);
	jb_kv_u64(jb, "swap-ins", st->swap_ins);
	jb_kv_u64(jb, "zero-fills", st->zero_fills);
	jb_kv_u64(jb, "prefetched", st->prefetched);
	jb_kv_u64(jb, "prefetch-hits", st->prefetch_hits);
	jb_kv_u64(jb, "enospc", st->enospc);
	jb_kv_u64(jb, "io-errors", st->io_errors);
	jb_kv_u64(jb, "csum-errors", st->csum_errors);
	jb_kv_u64(jb, "fault-p50-ns", st->fault_p50_ns);
	jb_kv_u64(jb, "fault-p99-ns", st->fault_p99_ns);
	jb_kv_u64(jb, "fault-max-ns", st->fault_max_ns);
	jb_kv_bool(jb, "stopped", st->stopped);
	jb_kv_str(jb, "swap-out", st->copy_mode ? "copy" : "move");
	/* The time the VM's threads waited in the library's fault handling
	 * (vCPU-ns, summed over faults), for a stall share over an interval. */
	jb_kv_u64(jb, "stall-ns", st->stall_ns);
	jb_kv_u64(jb, "stall-faults", st->stall_faults);
	jb_kv_u64(jb, "active-bytes", st->active_bytes);
	jb_kv_u64(jb, "sampled", st->sampled);
	jb_kv_u64(jb, "sampled-touched", st->sampled_touched);
	jb_kv_u64(jb, "probed", st->probed);
	jb_kv_u64(jb, "probed-touched", st->probed_touched);
	jb_kv_u64(jb, "hot-skips", st->hot_skips);
}

void wire_dedup_stats(struct jbuf *jb, const struct rf_dedup_stats *st, bool measured)
{
	jb_kv_bool(jb, "converged", st->converged);
	jb_kv_u64(jb, "scan-passes", st->scan_passes);
	jb_kv_u64(jb, "pages-scanned", st->pages_scanned);
	jb_kv_u64(jb, "pages-merged", st->pages_merged);
	jb_kv_u64(jb, "pages-sharing", st->pages_sharing);
	jb_kv_u64(jb, "pages-zero", st->pages_zero);
	jb_kv_u64(jb, "pages-unmerged", st->pages_unmerged);
	jb_kv_u64(jb, "volatile-skipped", st->volatile_skipped);
	jb_kv_u64(jb, "merge-races", st->merge_races);
	jb_kv_u64(jb, "hash-collisions", st->hash_collisions);
	jb_kv_u64(jb, "store-pages", st->store_pages);
	jb_kv_u64(jb, "vma-budget-stops", st->vma_budget_stops);
	if (measured)
		jb_kv_u64(jb, "vmas", st->vmas);
	jb_kv_u64(jb, "cpu-ns", st->cpu_ns);
	if (measured)
		jb_kv_u64(jb, "saved-bytes", st->saved_bytes);
	jb_kv_u64(jb, "broker-domains", st->broker_domains);
	jb_kv_u64(jb, "broker-pages-sharing", st->broker_pages_sharing);
	jb_kv_str(jb, "huge-mode", rf_dedup_huge_name(st->huge_mode));
	jb_kv_u64(jb, "huge-kept-pages", st->huge_kept_pages);
	jb_kv_u64(jb, "huge-zero-freed", st->huge_zero_freed);
	jb_kv_u64(jb, "huge-opened", st->huge_opened);
}

void wire_http_reply(int fd, const char *body)
{
	char head[256];

	if (!body) {
		static const char nf[] = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";

		(void)!send(fd, nf, strlen(nf), MSG_NOSIGNAL);
		return;
	}
	snprintf(head, sizeof(head),
		 "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 strlen(body));
	(void)!send(fd, head, strlen(head), MSG_NOSIGNAL);
	(void)!send(fd, body, strlen(body), MSG_NOSIGNAL);
}

int wire_unix_listen(const char *path, int type, int flags, unsigned int mode)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd, e;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED)
		unlink(path);
	close(fd);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || (mode && chmod(path, mode)) ||
	    listen(fd, SOMAXCONN)) {
		e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int wire_http_listen(int port, int flags)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0), e;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 16)) {
		e = -errno;
		close(fd);
		return e;
	}
	return fd;
}
