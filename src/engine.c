/* SPDX-License-Identifier: MIT */
/*
 * The engine: its config (defaults, features to hide for tests), creation
 * (the metadata arena, config checks, kernel feature detection) and teardown
 * (the engine modules of lib/modules.c stopped in reverse order, then every
 * VM freed, then the modules' engine-wide state), the host capacity default
 * (MemTotal or the memory cgroup's limit) and the last-error buffer.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "abi.h"
#include "internal.h"

RF_EXPORT const char *rf_version(void)
{
	return RF_VERSION_STRING;
}

/* MemTotal, or the memory cgroup's limit when that is lower. */
static uint64_t host_memory_bytes(void)
{
	unsigned long long kb = 0, lim;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");
	uint64_t bytes;

	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
				break;
		fclose(f);
	}
	bytes = (uint64_t)kb * 1024;
	f = fopen("/sys/fs/cgroup/memory.max", "re");
	if (f) {
		if (fscanf(f, "%llu", &lim) == 1 && lim > 0 && lim < bytes)
			bytes = lim;
		fclose(f);
	}
	return bytes;
}

RF_EXPORT void rf_engine_config_init(struct rf_engine_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->host_capacity_bytes = host_memory_bytes();
	cfg->scan_threads = 0; /* one per allowed CPU */
	cfg->log_level = RF_LOG_WARN;
}
RF_VERSION_0_3(rf_engine_config_init);

#define HIDE_KNOWN (RF_HIDE_UFFD_MOVE | RF_HIDE_PAGEMAP_SCAN)

static const struct {
	const char *name;
	unsigned int bit;
} hideable[] = {
    {"uffd-move", RF_HIDE_UFFD_MOVE},
    {"pagemap-scan", RF_HIDE_PAGEMAP_SCAN},
};

RF_EXPORT int rf_engine_config_hide(struct rf_engine_config *cfg, const char *names)
{
	unsigned int bits = 0;
	const char *p = names;

	if (!cfg || !names || cfg->size < RF_STRUCT_MIN(struct rf_engine_config, hide_features))
		return -EINVAL;
	while (*p) {
		size_t len = strcspn(p, ","), i;

		for (i = 0; i < sizeof(hideable) / sizeof(hideable[0]); i++)
			if (strlen(hideable[i].name) == len && !strncmp(p, hideable[i].name, len))
				break;
		if (i == sizeof(hideable) / sizeof(hideable[0]))
			return -EINVAL;
		bits |= hideable[i].bit;
		p += len;
		if (*p == ',')
			p++;
	}
	cfg->hide_features |= bits;
	return 0;
}
RF_VERSION_0_3(rf_engine_config_hide);

RF_EXPORT int rf_engine_new(const struct rf_engine_config *user, rf_engine **out)
{
	struct rf_engine_config cfg_full;
	const struct rf_engine_config *cfg = &cfg_full;
	unsigned int arena;
	rf_engine *e;
	int err;

	if (!user || !out)
		return -EINVAL;
	*out = NULL;
	/* No engine to log to yet: a bad size is only the return value. */
	rf_engine_config_init(&cfg_full);
	err = rf_struct_in(NULL, &cfg_full, sizeof(cfg_full), user,
			   RF_STRUCT_MIN(struct rf_engine_config, host_capacity_bytes),
			   "rf_engine_config");
	if (err)
		return err;
	err = rf_arena_new(&arena);
	if (err)
		return err;
	e = rf_arena_alloc_engine(arena, sizeof(*e));
	if (!e) {
		rf_arena_delete(arena);
		return -ENOMEM;
	}
	e->arena = arena;
	e->cfg = *cfg;
	e->pagemap_fd = -1;
	pthread_mutex_init(&e->err_lock, NULL);
	pthread_mutex_init(&e->vms_lock, NULL);
	snprintf(e->dev_kvm_path, sizeof(e->dev_kvm_path), "%s",
		 cfg->dev_kvm_path ? cfg->dev_kvm_path : "/dev/kvm");
	snprintf(e->ksm_sysfs_dir, sizeof(e->ksm_sysfs_dir), "%s",
		 cfg->ksm_sysfs_dir ? cfg->ksm_sysfs_dir : "/sys/kernel/mm/ksm");
	e->cfg.dev_kvm_path = e->dev_kvm_path;
	e->cfg.ksm_sysfs_dir = e->ksm_sysfs_dir;

	if (cfg->host_capacity_bytes == 0) {
		rf_log(e, RF_LOG_ERR, "ramfold: engine config: host capacity is 0 bytes");
		err = -EINVAL;
		goto err_free;
	}
	if (cfg->scan_threads > 64) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: engine config: %u scanner threads (1..64, or 0 for one per CPU)",
		       cfg->scan_threads);
		err = -EINVAL;
		goto err_free;
	}
	if (cfg->hide_features & ~HIDE_KNOWN) {
		rf_log(e, RF_LOG_ERR, "ramfold: engine config: unknown hide_features bits 0x%x",
		       cfg->hide_features & ~HIDE_KNOWN);
		err = -EINVAL;
		goto err_free;
	}
	err = rf_features_detect(e);
	if (err)
		goto err_close;
	*out = e;
	return 0;

err_close:
	if (e->pagemap_fd >= 0)
		close(e->pagemap_fd);
err_free:
	pthread_mutex_destroy(&e->vms_lock);
	pthread_mutex_destroy(&e->err_lock);
	rf_free(e, e);
	rf_arena_delete(arena);
	return err;
}
RF_VERSION_0_3(rf_engine_new);

RF_EXPORT void rf_engine_free(rf_engine *e)
{
	unsigned int arena, i, n;

	if (!e)
		return;
	/* Threads that act on VMs stop first (the policy before the dedup
	 * scanners it drives), then the VMs go, then engine-wide state. */
	n = 0;
	while (rf_engine_modules[n])
		n++;
	for (i = n; i-- > 0;)
		if (rf_engine_modules[i]->stop)
			rf_engine_modules[i]->stop(e);
	while (e->vms)
		rf_vm_free(e->vms);
	for (i = n; i-- > 0;)
		if (rf_engine_modules[i]->free)
			rf_engine_modules[i]->free(e);
	if (e->pagemap_fd >= 0)
		close(e->pagemap_fd);
	pthread_mutex_destroy(&e->vms_lock);
	pthread_mutex_destroy(&e->err_lock);
	arena = e->arena;
	rf_free(e, e);
	rf_arena_delete(arena);
}

RF_EXPORT int rf_engine_features(const rf_engine *e, struct rf_features *out)
{
	struct rf_features full;

	if (!e)
		return -EINVAL;
	RF_STRUCT_OUT((rf_engine *)e, out, full, kvm, "rf_features", (full = e->feat, 0));
}
RF_VERSION_0_3(rf_engine_features);

RF_EXPORT uint64_t rf_engine_capacity(const rf_engine *e)
{
	return e ? e->cfg.host_capacity_bytes : 0;
}

RF_EXPORT size_t rf_engine_last_error(rf_engine *e, char *buf, size_t len)
{
	size_t n;

	if (!e || !buf || len == 0)
		return 0;
	pthread_mutex_lock(&e->err_lock);
	snprintf(buf, len, "%s", e->last_error);
	n = strlen(e->last_error);
	pthread_mutex_unlock(&e->err_lock);
	return n;
}
