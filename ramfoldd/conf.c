/* SPDX-License-Identifier: MIT */
/*
 * domains.conf: who may join which sharing domain.
 *
 *   # comment
 *   NAME RULE...      RULE: uid=N | gid=N | cgroup=/prefix
 *
 * One domain per line; any rule admits. gid= matches the peer's primary
 * group or any of its supplementary groups (SO_PEERGROUPS); cgroup= the
 * peer's cgroup v2 path equal to the prefix or below it ("/a" admits "/a"
 * and "/a/b", not "/ab"). A line that is not understood is an error naming
 * the file and line: a daemon that guards memory between tenants does not
 * guess what a rule meant.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

bool domain_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= RFB_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

void domains_free(struct domains *d)
{
	for (size_t i = 0; i < d->n; i++) {
		for (size_t r = 0; r < d->dom[i].nrules; r++)
			free(d->dom[i].rules[r].prefix);
		free(d->dom[i].rules);
	}
	free(d->dom);
	d->dom = NULL;
	d->n = 0;
}

static int parse_id(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v >= UINT32_MAX) /* (uid_t)-1 is "no uid" */
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_rule(char *tok, struct dom_rule *r)
{
	char *eq = strchr(tok, '=');

	if (!eq)
		return -EINVAL;
	*eq++ = 0;
	if (!strcmp(tok, "uid")) {
		r->kind = RULE_UID;
		return parse_id(eq, &r->id);
	}
	if (!strcmp(tok, "gid")) {
		r->kind = RULE_GID;
		return parse_id(eq, &r->id);
	}
	if (!strcmp(tok, "cgroup")) {
		size_t n = strlen(eq);

		if (eq[0] != '/')
			return -EINVAL;
		while (n > 1 && eq[n - 1] == '/') /* "/a/" is "/a" */
			eq[--n] = 0;
		r->kind = RULE_CGROUP;
		r->prefix = strdup(eq);
		return r->prefix ? 0 : -ENOMEM;
	}
	return -EINVAL;
}

/* One line (modified in place) into @d; 0 for blank and comment lines. */
static int parse_line(char *line, struct domains *d, char *why, size_t whylen)
{
	static const char sep[] = " \t\r\n";
	char *save = NULL, *name, *tok;
	struct dom_conf *dc, *grown;
	char *hash = strchr(line, '#');

	if (hash)
		*hash = 0;
	name = strtok_r(line, sep, &save);
	if (!name)
		return 0;
	if (!domain_name_ok(name)) {
		snprintf(why, whylen, "domain name \"%.70s\": 1 to %d of A-Z a-z 0-9 _ . -", name,
			 RFB_DOMAIN_MAX - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->dom[i].name, name)) {
			snprintf(why, whylen, "domain \"%s\" given twice (one line per domain)",
				 name);
			return -EINVAL;
		}
	grown = realloc(d->dom, (d->n + 1) * sizeof(*d->dom));
	if (!grown)
		return -ENOMEM;
	d->dom = grown;
	dc = &d->dom[d->n++];
	memset(dc, 0, sizeof(*dc));
	snprintf(dc->name, sizeof(dc->name), "%s", name);
	while ((tok = strtok_r(NULL, sep, &save))) {
		struct dom_rule *rules = realloc(dc->rules, (dc->nrules + 1) * sizeof(*rules));
		char copy[128];
		int e;

		if (!rules)
			return -ENOMEM;
		dc->rules = rules;
		memset(&rules[dc->nrules], 0, sizeof(*rules));
		snprintf(copy, sizeof(copy), "%s", tok);
		e = parse_rule(tok, &rules[dc->nrules]);
		if (e == -ENOMEM)
			return e;
		if (e) {
			snprintf(why, whylen,
				 "domain \"%s\": rule \"%.80s\": expected uid=N, gid=N or "
				 "cgroup=/path",
				 name, copy);
			return e;
		}
		dc->nrules++;
	}
	if (!dc->nrules) {
		snprintf(why, whylen, "domain \"%s\" has no rule (uid=N, gid=N or cgroup=/path)",
			 name);
		return -EINVAL;
	}
	return 0;
}

int domains_parse(const char *text, const char *name, struct domains *d, char *err, size_t errlen)
{
	const char *p = text;
	unsigned lineno = 0;

	memset(d, 0, sizeof(*d));
	d->private_uid = -1;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char why[200] = "out of memory";
		char *line = strndup(p, n);
		int e;

		lineno++;
		e = line ? parse_line(line, d, why, sizeof(why)) : -ENOMEM;
		free(line);
		if (e) {
			snprintf(err, errlen, "%s:%u: %s", name, lineno, why);
			domains_free(d);
			return e;
		}
		p += n + (nl != NULL);
	}
	return 0;
}

int domains_load(const char *path, struct domains *d, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0;
	ssize_t len;
	int e;

	if (!f) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-e));
		return e;
	}
	/* The whole file, NULs and all: getdelim with a delimiter that
	 * cannot be in a text file. */
	len = getdelim(&text, &cap, '\0', f);
	fclose(f);
	if (len < 0) {
		free(text);
		text = strdup("");
		if (!text)
			return -ENOMEM;
	} else if ((size_t)len != strlen(text)) {
		snprintf(err, errlen, "%s: a NUL byte in the file (not a text file)", path);
		free(text);
		return -EINVAL;
	}
	e = domains_parse(text, path, d, err, errlen);
	free(text);
	return e;
}

static bool cgroup_under(const char *cg, const char *prefix)
{
	size_t n = strlen(prefix);

	if (!strcmp(prefix, "/"))
		return true;
	return !strncmp(cg, prefix, n) && (cg[n] == 0 || cg[n] == '/');
}

static bool rule_admits(const struct dom_rule *r, const struct broker_peer *p)
{
	switch (r->kind) {
	case RULE_UID:
		return p->uid == r->id;
	case RULE_GID:
		if (p->gid == r->id)
			return true;
		for (size_t i = 0; i < p->ngroups; i++)
			if (p->groups[i] == r->id)
				return true;
		return false;
	case RULE_CGROUP:
		return p->cgroup && cgroup_under(p->cgroup, r->prefix);
	}
	return false;
}

bool domains_admit(const struct domains *d, const char *name, const struct broker_peer *p)
{
	if (d->private_uid >= 0)
		return (long long)p->uid == d->private_uid;
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->dom[i].name, name))
			continue;
		for (size_t r = 0; r < d->dom[i].nrules; r++)
			if (rule_admits(&d->dom[i].rules[r], p))
				return true;
		return false;
	}
	return false;
}
