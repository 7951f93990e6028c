/* SPDX-License-Identifier: MIT */
/*
 * A small JSON reader and writer for the control socket.
 *
 * Reader: json_parse() builds a tree (objects keep their keys in order);
 * numbers keep their text, a double, and an exact uint64/int64 when they are
 * integers. Depth is limited (JSON_MAX_DEPTH) so a hostile client cannot
 * exhaust the stack. Writer: struct jbuf appends to a growing string and
 * places commas itself; jb_key() before every value inside an object.
 */
#ifndef VMM_JSON_H
#define VMM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

#define JSON_MAX_DEPTH 32

struct json {
	enum json_type type;
	char *key; /* member name when inside an object */
	char *str; /* JSON_STRING: decoded, NUL-terminated; JSON_NUMBER: its text */
	double num;
	bool boolean;
	bool is_int; /* JSON_NUMBER without fraction/exponent, fits int64 or uint64 */
	bool negative;
	uint64_t u64; /* magnitude when is_int */
	struct json *child, *next;
	size_t count; /* members or elements */
};

/* Parse @len bytes. NULL on error, with a one-line reason in @err. */
struct json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(struct json *j);

/* Member @key of object @obj, or NULL (also when @obj is not an object). */
const struct json *json_get(const struct json *obj, const char *key);
/* String member or NULL. */
const char *json_get_str(const struct json *obj, const char *key);
/* Non-negative integer member: 0, -ENOENT (absent) or -EINVAL (wrong type). */
int json_get_u64(const struct json *obj, const char *key, uint64_t *out);
/* Size member: an integer (bytes) or a string with an optional K/M/G/T suffix
 * ("256M"). 0, -ENOENT or -EINVAL. */
int json_get_size(const struct json *obj, const char *key, uint64_t *out);

struct jbuf {
	char *buf;
	size_t len, cap;
	bool oom;
	unsigned depth;
	bool first[JSON_MAX_DEPTH + 1]; /* no member written yet at this depth */
	bool after_key;
};

void jb_init(struct jbuf *jb);
void jb_free(struct jbuf *jb);
/* The text so far ("" if nothing); NULL if an allocation failed. */
const char *jb_str(const struct jbuf *jb);
void jb_obj_open(struct jbuf *jb);
void jb_obj_close(struct jbuf *jb);
void jb_arr_open(struct jbuf *jb);
void jb_arr_close(struct jbuf *jb);
void jb_key(struct jbuf *jb, const char *key);
void jb_string(struct jbuf *jb, const char *s);
void jb_u64(struct jbuf *jb, uint64_t v);
void jb_i64(struct jbuf *jb, int64_t v);
void jb_double(struct jbuf *jb, double v);
void jb_bool(struct jbuf *jb, bool v);
void jb_null(struct jbuf *jb);
/* Insert already-serialised JSON as one value. */
void jb_raw(struct jbuf *jb, const char *json);
/* Shorthands for a key and its value. */
void jb_kv_str(struct jbuf *jb, const char *key, const char *s);
void jb_kv_u64(struct jbuf *jb, const char *key, uint64_t v);
void jb_kv_i64(struct jbuf *jb, const char *key, int64_t v);
void jb_kv_bool(struct jbuf *jb, const char *key, bool v);
void jb_kv_double(struct jbuf *jb, const char *key, double v);

#endif
