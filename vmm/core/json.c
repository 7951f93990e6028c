/* SPDX-License-Identifier: MIT */
/* JSON reader and writer; see json.h. Recursive descent, bounded depth. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/util.h"

struct parser {
	const char *s, *end;
	char *err;
	size_t errlen;
	bool failed;
};

static void parse_fail(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	if (!p->err || !p->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
}

static void skip_ws(struct parser *p)
{
	while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
		p->s++;
}

static struct json *new_node(struct parser *p, enum json_type t)
{
	struct json *j = calloc(1, sizeof(*j));

	if (!j)
		parse_fail(p, "out of memory");
	else
		j->type = t;
	return j;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void put_utf8(char **o, uint32_t cp)
{
	char *d = *o;

	if (cp < 0x80) {
		*d++ = (char)cp;
	} else if (cp < 0x800) {
		*d++ = (char)(0xc0 | cp >> 6);
		*d++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*d++ = (char)(0xe0 | cp >> 12);
		*d++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*d++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*d++ = (char)(0xf0 | cp >> 18);
		*d++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*d++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*d++ = (char)(0x80 | (cp & 0x3f));
	}
	*o = d;
}

static int parse_hex4(struct parser *p, uint32_t *cp)
{
	*cp = 0;
	if (p->end - p->s < 4) {
		parse_fail(p, "truncated \\u escape");
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		int v = hexval(p->s[i]);

		if (v < 0) {
			parse_fail(p, "bad \\u escape");
			return -1;
		}
		*cp = *cp << 4 | (uint32_t)v;
	}
	p->s += 4;
	return 0;
}

/* A string: the output is never longer than the input, so one allocation. */
static char *parse_string(struct parser *p)
{
	const char *start = ++p->s;
	char *out, *o;

	out = o = malloc((size_t)(p->end - start) + 1);
	if (!out) {
		parse_fail(p, "out of memory");
		return NULL;
	}
	while (p->s < p->end && *p->s != '"') {
		unsigned char c = (unsigned char)*p->s;

		if (c < 0x20) {
			parse_fail(p, "control character in string");
			goto bad;
		}
		if (c != '\\') {
			*o++ = (char)c;
			p->s++;
			continue;
		}
		if (++p->s >= p->end)
			break;
		switch (*p->s++) {
		case '"':
			*o++ = '"';
			break;
		case '\\':
			*o++ = '\\';
			break;
		case '/':
			*o++ = '/';
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u': {
			uint32_t cp, lo;

			if (parse_hex4(p, &cp))
				goto bad;
			if (cp >= 0xd800 && cp < 0xdc00 && p->end - p->s >= 6 && p->s[0] == '\\' &&
			    p->s[1] == 'u') {
				p->s += 2;
				if (parse_hex4(p, &lo))
					goto bad;
				if (lo < 0xdc00 || lo > 0xdfff) {
					parse_fail(p, "bad surrogate pair");
					goto bad;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xd800 && cp < 0xe000) {
				parse_fail(p, "lone surrogate");
				goto bad;
			}
			if (cp == 0) {
				parse_fail(p, "NUL in string");
				goto bad;
			}
			put_utf8(&o, cp);
			break;
		}
		default:
			parse_fail(p, "bad escape");
			goto bad;
		}
	}
	if (p->s >= p->end) {
		parse_fail(p, "unterminated string");
		goto bad;
	}
	p->s++;
	*o = 0;
	return out;
bad:
	free(out);
	return NULL;
}

static void parse_number(struct parser *p, struct json *j)
{
	const char *start = p->s;
	bool frac = false;
	char *endp;

	if (p->s < p->end && *p->s == '-')
		p->s++;
	if (p->s >= p->end || *p->s < '0' || *p->s > '9') {
		parse_fail(p, "bad number");
		return;
	}
	if (*p->s == '0' && p->s + 1 < p->end && p->s[1] >= '0' && p->s[1] <= '9') {
		parse_fail(p, "leading zero in number");
		return;
	}
	while (p->s < p->end && *p->s >= '0' && *p->s <= '9')
		p->s++;
	if (p->s < p->end && *p->s == '.') {
		frac = true;
		p->s++;
		if (p->s >= p->end || *p->s < '0' || *p->s > '9') {
			parse_fail(p, "bad number");
			return;
		}
		while (p->s < p->end && *p->s >= '0' && *p->s <= '9')
			p->s++;
	}
	if (p->s < p->end && (*p->s == 'e' || *p->s == 'E')) {
		frac = true;
		p->s++;
		if (p->s < p->end && (*p->s == '+' || *p->s == '-'))
			p->s++;
		if (p->s >= p->end || *p->s < '0' || *p->s > '9') {
			parse_fail(p, "bad number");
			return;
		}
		while (p->s < p->end && *p->s >= '0' && *p->s <= '9')
			p->s++;
	}
	j->str = strndup(start, (size_t)(p->s - start));
	if (!j->str) {
		parse_fail(p, "out of memory");
		return;
	}
	j->num = strtod(j->str, NULL);
	j->negative = j->str[0] == '-';
	if (!frac) {
		errno = 0;
		j->u64 = strtoull(j->str + j->negative, &endp, 10);
		j->is_int = errno == 0 && (!j->negative || j->u64 <= (uint64_t)INT64_MAX + 1);
	}
}

static struct json *parse_value(struct parser *p, unsigned depth);

static void append(struct json *parent, struct json **tail, struct json *c)
{
	if (*tail)
		(*tail)->next = c;
	else
		parent->child = c;
	*tail = c;
	parent->count++;
}

static struct json *parse_container(struct parser *p, unsigned depth, bool obj)
{
	struct json *j = new_node(p, obj ? JSON_OBJECT : JSON_ARRAY), *tail = NULL;
	char close = obj ? '}' : ']';

	if (!j)
		return NULL;
	p->s++;
	skip_ws(p);
	if (p->s < p->end && *p->s == close) {
		p->s++;
		return j;
	}
	for (;;) {
		char *key = NULL;
		struct json *v;

		skip_ws(p);
		if (obj) {
			if (p->s >= p->end || *p->s != '"') {
				parse_fail(p, "expected a member name");
				break;
			}
			key = parse_string(p);
			if (!key)
				break;
			skip_ws(p);
			if (p->s >= p->end || *p->s != ':') {
				free(key);
				parse_fail(p, "expected ':'");
				break;
			}
			p->s++;
		}
		v = parse_value(p, depth + 1);
		if (!v) {
			free(key);
			break;
		}
		v->key = key;
		append(j, &tail, v);
		skip_ws(p);
		if (p->s < p->end && *p->s == ',') {
			p->s++;
			continue;
		}
		if (p->s < p->end && *p->s == close) {
			p->s++;
			return j;
		}
		parse_fail(p, "expected ',' or '%c'", close);
		break;
	}
	json_free(j);
	return NULL;
}

static bool match(struct parser *p, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(p->end - p->s) >= n && !memcmp(p->s, word, n)) {
		p->s += n;
		return true;
	}
	return false;
}

static struct json *parse_value(struct parser *p, unsigned depth)
{
	struct json *j;

	if (depth > JSON_MAX_DEPTH) {
		parse_fail(p, "nested deeper than %d", JSON_MAX_DEPTH);
		return NULL;
	}
	skip_ws(p);
	if (p->s >= p->end) {
		parse_fail(p, "unexpected end of input");
		return NULL;
	}
	switch (*p->s) {
	case '{':
		return parse_container(p, depth, true);
	case '[':
		return parse_container(p, depth, false);
	case '"':
		j = new_node(p, JSON_STRING);
		if (j && !(j->str = parse_string(p))) {
			free(j);
			return NULL;
		}
		return j;
	case 't':
	case 'f':
	case 'n':
		if (match(p, "true") || match(p, "false")) {
			j = new_node(p, JSON_BOOL);
			if (j)
				j->boolean = p->s[-1] == 'e' && p->s[-2] == 'u';
			return j;
		}
		if (match(p, "null"))
			return new_node(p, JSON_NULL);
		parse_fail(p, "unexpected word");
		return NULL;
	default:
		j = new_node(p, JSON_NUMBER);
		if (!j)
			return NULL;
		parse_number(p, j);
		if (p->failed) {
			json_free(j);
			return NULL;
		}
		return j;
	}
}

struct json *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct parser p = {text, text + len, err, errlen, false};
	struct json *j;

	if (err && errlen)
		err[0] = 0;
	j = parse_value(&p, 0);
	if (!j)
		return NULL;
	skip_ws(&p);
	if (p.s != p.end) {
		parse_fail(&p, "trailing characters after the value");
		json_free(j);
		return NULL;
	}
	return j;
}

void json_free(struct json *j)
{
	while (j) {
		struct json *next = j->next;

		json_free(j->child);
		free(j->key);
		free(j->str);
		free(j);
		j = next;
	}
}

const struct json *json_get(const struct json *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJECT)
		return NULL;
	for (const struct json *c = obj->child; c; c = c->next)
		if (c->key && !strcmp(c->key, key))
			return c;
	return NULL;
}

const char *json_get_str(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	return v && v->type == JSON_STRING ? v->str : NULL;
}

int json_get_u64(const struct json *obj, const char *key, uint64_t *out)
{
	const struct json *v = json_get(obj, key);

	if (!v)
		return -ENOENT;
	if (v->type != JSON_NUMBER || !v->is_int || v->negative)
		return -EINVAL;
	*out = v->u64;
	return 0;
}

int json_get_size(const struct json *obj, const char *key, uint64_t *out)
{
	const struct json *v = json_get(obj, key);

	if (!v)
		return -ENOENT;
	if (v->type == JSON_STRING)
		return parse_size(v->str, out);
	return json_get_u64(obj, key, out);
}

/* ---- writer ---- */

void jb_init(struct jbuf *jb)
{
	memset(jb, 0, sizeof(*jb));
	jb->first[0] = true;
}

void jb_free(struct jbuf *jb)
{
	free(jb->buf);
	jb_init(jb);
}

const char *jb_str(const struct jbuf *jb)
{
	if (jb->oom)
		return NULL;
	return jb->buf ? jb->buf : "";
}

static void put(struct jbuf *jb, const char *s, size_t n)
{
	if (jb->oom)
		return;
	if (jb->len + n + 1 > jb->cap) {
		size_t cap = jb->cap ? jb->cap : 256;
		char *b;

		while (cap < jb->len + n + 1)
			cap *= 2;
		b = realloc(jb->buf, cap);
		if (!b) {
			jb->oom = true;
			return;
		}
		jb->buf = b;
		jb->cap = cap;
	}
	memcpy(jb->buf + jb->len, s, n);
	jb->len += n;
	jb->buf[jb->len] = 0;
}

static void puts_(struct jbuf *jb, const char *s)
{
	put(jb, s, strlen(s));
}

/* Before any value: a comma unless it is the first at this level or follows
 * its key. */
static void pre_value(struct jbuf *jb)
{
	if (jb->after_key) {
		jb->after_key = false;
		return;
	}
	if (!jb->first[jb->depth])
		put(jb, ",", 1);
	jb->first[jb->depth] = false;
}

static void open_(struct jbuf *jb, char c)
{
	pre_value(jb);
	put(jb, &c, 1);
	if (jb->depth < JSON_MAX_DEPTH)
		jb->depth++;
	jb->first[jb->depth] = true;
}

static void close_(struct jbuf *jb, char c)
{
	put(jb, &c, 1);
	if (jb->depth)
		jb->depth--;
}

void jb_obj_open(struct jbuf *jb)
{
	open_(jb, '{');
}

void jb_obj_close(struct jbuf *jb)
{
	close_(jb, '}');
}

void jb_arr_open(struct jbuf *jb)
{
	open_(jb, '[');
}

void jb_arr_close(struct jbuf *jb)
{
	close_(jb, ']');
}

static void put_escaped(struct jbuf *jb, const char *s)
{
	put(jb, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];

		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			put(jb, tmp, 2);
		} else if (c < 0x20) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
			puts_(jb, tmp);
		} else {
			put(jb, (const char *)&c, 1);
		}
	}
	put(jb, "\"", 1);
}

void jb_key(struct jbuf *jb, const char *key)
{
	pre_value(jb);
	put_escaped(jb, key);
	put(jb, ":", 1);
	jb->after_key = true;
}

void jb_string(struct jbuf *jb, const char *s)
{
	pre_value(jb);
	put_escaped(jb, s ? s : "");
}

void jb_u64(struct jbuf *jb, uint64_t v)
{
	char tmp[24];

	pre_value(jb);
	snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	puts_(jb, tmp);
}

void jb_i64(struct jbuf *jb, int64_t v)
{
	char tmp[24];

	pre_value(jb);
	snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
	puts_(jb, tmp);
}

void jb_double(struct jbuf *jb, double v)
{
	char tmp[32];

	pre_value(jb);
	if (!isfinite(v))
		snprintf(tmp, sizeof(tmp), "null");
	else
		snprintf(tmp, sizeof(tmp), "%.6g", v);
	puts_(jb, tmp);
}

void jb_bool(struct jbuf *jb, bool v)
{
	pre_value(jb);
	puts_(jb, v ? "true" : "false");
}

void jb_null(struct jbuf *jb)
{
	pre_value(jb);
	puts_(jb, "null");
}

void jb_raw(struct jbuf *jb, const char *json)
{
	pre_value(jb);
	puts_(jb, json);
}

void jb_kv_str(struct jbuf *jb, const char *key, const char *s)
{
	jb_key(jb, key);
	jb_string(jb, s);
}

void jb_kv_u64(struct jbuf *jb, const char *key, uint64_t v)
{
	jb_key(jb, key);
	jb_u64(jb, v);
}

void jb_kv_i64(struct jbuf *jb, const char *key, int64_t v)
{
	jb_key(jb, key);
	jb_i64(jb, v);
}

void jb_kv_bool(struct jbuf *jb, const char *key, bool v)
{
	jb_key(jb, key);
	jb_bool(jb, v);
}

void jb_kv_double(struct jbuf *jb, const char *key, double v)
{
	jb_key(jb, key);
	jb_double(jb, v);
}
