/* SPDX-License-Identifier: MIT */
/*
 * AML encoder; see acpi_aml.h. Opcode values and encodings are those of the
 * ACPI specification 6.5, section 20.2 (AML grammar definition) and section
 * 6.4.3 (large resource data types).
 */
#include "linux/acpi_aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
	AML_ZERO_OP = 0x00,
	AML_ONE_OP = 0x01,
	AML_NAME_OP = 0x08,
	AML_BYTE_PREFIX = 0x0a,
	AML_WORD_PREFIX = 0x0b,
	AML_DWORD_PREFIX = 0x0c,
	AML_STRING_PREFIX = 0x0d,
	AML_QWORD_PREFIX = 0x0e,
	AML_SCOPE_OP = 0x10,
	AML_BUFFER_OP = 0x11,
	AML_PACKAGE_OP = 0x12,
	AML_METHOD_OP = 0x14,
	AML_DUAL_NAME_PREFIX = 0x2e,
	AML_MULTI_NAME_PREFIX = 0x2f,
	AML_EXT_OP_PREFIX = 0x5b,
	AML_DEVICE_OP = 0x82,	  /* after ExtOpPrefix */
	AML_ROOT_CHAR = 0x5c,	  /* '\' */
	AML_PARENT_PREFIX = 0x5e, /* '^' */
	AML_RETURN_OP = 0xa4,
	AML_ONES_OP = 0xff,
	/* Resource descriptors (large items: tag, 16-bit length). */
	AML_RES_MEMORY32_FIXED = 0x86,
	AML_RES_EXT_INTERRUPT = 0x89,
	AML_RES_QWORD_ADDRESS = 0x8a,
	/* Small item End Tag: type 0xf, length 1. */
	AML_RES_END_TAG = 0x79,
};

#define AML_PKGLENGTH_MAX 0x0fffffffu

void aml_buf_init(struct aml_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void aml_buf_free(struct aml_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void aml_fail(struct aml_buf *b, int err)
{
	if (!b->err)
		b->err = err;
}

void aml_bytes(struct aml_buf *b, const void *p, size_t n)
{
	if (b->err || !n)
		return;
	if (n > SIZE_MAX / 2 - b->len) {
		aml_fail(b, -EINVAL);
		return;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		uint8_t *d;

		while (cap < b->len + n)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d) {
			aml_fail(b, -ENOMEM);
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void aml_byte(struct aml_buf *b, uint8_t v)
{
	aml_bytes(b, &v, 1);
}

/* Little-endian, as every multi-byte AML and resource field is. */
static void aml_le(struct aml_buf *b, uint64_t v, unsigned n)
{
	uint8_t out[8];

	for (unsigned i = 0; i < n; i++)
		out[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(b, out, n);
}

void aml_append(struct aml_buf *b, const struct aml_buf *child)
{
	if (child->err) {
		aml_fail(b, child->err);
		return;
	}
	aml_bytes(b, child->data, child->len);
}

/*
 * PkgLength (20.2.4): bits 7-6 of the lead byte give the count of following
 * bytes (0-3). With none, bits 5-0 hold the length (up to 63). Otherwise
 * bits 3-0 hold its low nibble and each following byte the next 8 bits, so
 * 2, 3 and 4 bytes reach 2^12-1, 2^20-1 and 2^28-1. The length includes the
 * PkgLength bytes themselves, hence the search for the smallest n that fits.
 */
int aml_pkglength(size_t body, uint8_t out[4])
{
	static const size_t max[4] = {0x3f, 0xfff, 0xfffff, AML_PKGLENGTH_MAX};

	for (unsigned n = 1; n <= 4; n++) {
		size_t total;

		if (body > max[n - 1] - n)
			continue;
		total = body + n;
		if (n == 1) {
			out[0] = (uint8_t)total;
			return 1;
		}
		out[0] = (uint8_t)(((n - 1) << 6) | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return (int)n;
	}
	return -EINVAL;
}

static void aml_pkg_prefix(struct aml_buf *b, size_t body)
{
	uint8_t pl[4];
	int n = aml_pkglength(body, pl);

	if (n < 0)
		aml_fail(b, n);
	else
		aml_bytes(b, pl, (size_t)n);
}

void aml_integer(struct aml_buf *b, uint64_t v)
{
	if (v == 0)
		aml_byte(b, AML_ZERO_OP);
	else if (v == 1)
		aml_byte(b, AML_ONE_OP);
	else if (v == UINT64_MAX)
		aml_byte(b, AML_ONES_OP);
	else if (v <= 0xff) {
		aml_byte(b, AML_BYTE_PREFIX);
		aml_le(b, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(b, AML_WORD_PREFIX);
		aml_le(b, v, 2);
	} else if (v <= 0xffffffff) {
		aml_byte(b, AML_DWORD_PREFIX);
		aml_le(b, v, 4);
	} else {
		aml_byte(b, AML_QWORD_PREFIX);
		aml_le(b, v, 8);
	}
}

/*
 * EISA ID (ACPI 6.1.5, _HID): bits 30-26, 25-21, 20-16 hold the letters
 * ('A' = 1), bits 15-0 the four hex digits; the value is stored with its
 * bytes swapped, so "PNP0501" is 0x41d00501 swapped: 0x0105d041.
 */
void aml_eisaid(struct aml_buf *b, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7) {
		aml_fail(b, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(b, -EINVAL);
			return;
		}
		v |= (uint32_t)(id[i] - 0x40) << (26 - 5 * i);
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else {
			aml_fail(b, -EINVAL);
			return;
		}
		v |= d << (4 * (6 - i));
	}
	aml_integer(b, __builtin_bswap32(v));
}

void aml_string(struct aml_buf *b, const char *s)
{
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c > 0x7f) {
			aml_fail(b, -EINVAL);
			return;
		}
	aml_byte(b, AML_STRING_PREFIX);
	aml_bytes(b, s, strlen(s) + 1);
}

static int aml_lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static int aml_name_char(char c)
{
	return aml_lead_char(c) || (c >= '0' && c <= '9');
}

/* NameString (20.2.2): prefixes, then one, two (DualNamePrefix) or more segments. */
void aml_namestring(struct aml_buf *b, const char *path)
{
	uint8_t segs[255][4];
	unsigned nseg = 0;
	const char *p = path;

	if (*p == '\\') {
		aml_byte(b, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == '^') {
			aml_byte(b, AML_PARENT_PREFIX);
			p++;
		}
	}
	while (*p) {
		unsigned n = 0;

		if (nseg == 255) {
			aml_fail(b, -EINVAL);
			return;
		}
		while (p[n] && p[n] != '.')
			n++;
		if (n < 1 || n > 4 || !aml_lead_char(p[0])) {
			aml_fail(b, -EINVAL);
			return;
		}
		for (unsigned i = 0; i < 4; i++) {
			if (i < n && !aml_name_char(p[i])) {
				aml_fail(b, -EINVAL);
				return;
			}
			segs[nseg][i] = i < n ? (uint8_t)p[i] : '_';
		}
		nseg++;
		p += n;
		if (*p == '.') {
			p++;
			if (!*p) {
				aml_fail(b, -EINVAL);
				return;
			}
		}
	}
	if (nseg == 0) {
		aml_byte(b, 0x00); /* NullName */
		return;
	}
	if (nseg == 2)
		aml_byte(b, AML_DUAL_NAME_PREFIX);
	else if (nseg > 2) {
		aml_byte(b, AML_MULTI_NAME_PREFIX);
		aml_byte(b, (uint8_t)nseg);
	}
	aml_bytes(b, segs, 4 * (size_t)nseg);
}

void aml_name(struct aml_buf *b, const char *path, const struct aml_buf *obj)
{
	aml_byte(b, AML_NAME_OP);
	aml_namestring(b, path);
	aml_append(b, obj);
}

void aml_name_integer(struct aml_buf *b, const char *path, uint64_t v)
{
	aml_byte(b, AML_NAME_OP);
	aml_namestring(b, path);
	aml_integer(b, v);
}

void aml_name_string(struct aml_buf *b, const char *path, const char *s)
{
	aml_byte(b, AML_NAME_OP);
	aml_namestring(b, path);
	aml_string(b, s);
}

/* DefBuffer := BufferOp PkgLength BufferSize ByteList */
void aml_buffer(struct aml_buf *b, const void *p, size_t n)
{
	struct aml_buf body;

	aml_buf_init(&body);
	aml_integer(&body, n);
	aml_bytes(&body, p, n);
	aml_byte(b, AML_BUFFER_OP);
	aml_pkg_prefix(b, body.len);
	aml_append(b, &body);
	aml_buf_free(&body);
}

/* DefPackage := PackageOp PkgLength NumElements PackageElementList */
void aml_package_wrap(struct aml_buf *b, unsigned count, const struct aml_buf *elems)
{
	if (count > 255) {
		aml_fail(b, -EINVAL);
		return;
	}
	aml_byte(b, AML_PACKAGE_OP);
	aml_pkg_prefix(b, 1 + elems->len);
	aml_byte(b, (uint8_t)count);
	aml_append(b, elems);
}

/* Scope, Device and Method: Op PkgLength NameString [flags] TermList */
static void aml_named_block(struct aml_buf *b, const char *path, int has_flags, uint8_t flags,
			    const struct aml_buf *body)
{
	struct aml_buf head;

	aml_buf_init(&head);
	aml_namestring(&head, path);
	if (has_flags)
		aml_byte(&head, flags);
	aml_pkg_prefix(b, head.len + body->len);
	aml_append(b, &head);
	aml_append(b, body);
	aml_buf_free(&head);
}

void aml_scope_wrap(struct aml_buf *b, const char *path, const struct aml_buf *body)
{
	aml_byte(b, AML_SCOPE_OP);
	aml_named_block(b, path, 0, 0, body);
}

void aml_device_wrap(struct aml_buf *b, const char *path, const struct aml_buf *body)
{
	aml_byte(b, AML_EXT_OP_PREFIX);
	aml_byte(b, AML_DEVICE_OP);
	aml_named_block(b, path, 0, 0, body);
}

/* MethodFlags: bits 2-0 ArgCount, bit 3 SerializeFlag, bits 7-4 SyncLevel (0). */
void aml_method_wrap(struct aml_buf *b, const char *path, unsigned nargs, int serialized,
		     const struct aml_buf *body)
{
	if (nargs > 7) {
		aml_fail(b, -EINVAL);
		return;
	}
	aml_byte(b, AML_METHOD_OP);
	aml_named_block(b, path, 1, (uint8_t)(nargs | (serialized ? 0x08 : 0)), body);
}

void aml_return(struct aml_buf *b, const struct aml_buf *obj)
{
	aml_byte(b, AML_RETURN_OP);
	aml_append(b, obj);
}

/*
 * 32-bit Fixed Memory Range Descriptor (6.4.3.4): tag 0x86, length 9,
 * information (bit 0: writable), base, length.
 */
void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len, int writable)
{
	aml_byte(b, AML_RES_MEMORY32_FIXED);
	aml_le(b, 9, 2);
	aml_byte(b, writable ? 1 : 0);
	aml_le(b, base, 4);
	aml_le(b, len, 4);
}

/*
 * I/O Port Descriptor (6.4.2.5): small item type 8, length 7 (tag 0x47),
 * information (bit 0: 16-bit decode), minimum and maximum base, alignment,
 * length.
 */
void aml_res_io(struct aml_buf *b, uint16_t base, uint8_t len)
{
	aml_byte(b, 0x47);
	aml_byte(b, 1);
	aml_le(b, base, 2);
	aml_le(b, base, 2);
	aml_byte(b, 1);
	aml_byte(b, len);
}

/*
 * IRQ Descriptor (6.4.2.1) without the flags byte: small item type 4,
 * length 2 (tag 0x22), a 16-bit mask of ISA IRQs; means edge, active-high.
 */
void aml_res_irq_noflags(struct aml_buf *b, unsigned irq)
{
	if (irq > 15) {
		aml_fail(b, -EINVAL);
		return;
	}
	aml_byte(b, 0x22);
	aml_le(b, 1u << irq, 2);
}

/*
 * QWord Address Space Descriptor (6.4.3.5.1): tag 0x8a, length 43, resource
 * type 0 (memory), general flags (bit 3 max fixed, bit 2 min fixed, bit 1
 * subtractive decode, bit 0 consumer), type-specific flags (bit 0 writable,
 * bits 2-1 cacheability: 0 non-cacheable), then granularity, minimum,
 * maximum, translation offset and length, 8 bytes each.
 */
void aml_res_qword_memory(struct aml_buf *b, uint64_t base, uint64_t len, int writable)
{
	if (!len || base + len - 1 < base) {
		aml_fail(b, -EINVAL);
		return;
	}
	aml_byte(b, AML_RES_QWORD_ADDRESS);
	aml_le(b, 43, 2);
	aml_byte(b, 0);
	aml_byte(b, (1 << 3) | (1 << 2) | 1);
	aml_byte(b, writable ? 1 : 0);
	aml_le(b, 0, 8);
	aml_le(b, base, 8);
	aml_le(b, base + len - 1, 8);
	aml_le(b, 0, 8);
	aml_le(b, len, 8);
}

/*
 * Extended Interrupt Descriptor (6.4.3.6): tag 0x89, length 2 + 4 per
 * interrupt, flags (bit 0 consumer, 1 edge, 2 active-low, 3 shared, 4 wake
 * capable), the interrupt table length, then each interrupt number.
 */
void aml_res_interrupt(struct aml_buf *b, unsigned flags, uint32_t irq)
{
	aml_byte(b, AML_RES_EXT_INTERRUPT);
	aml_le(b, 6, 2);
	aml_byte(b, (uint8_t)(flags & 0x1f));
	aml_byte(b, 1);
	aml_le(b, irq, 4);
}

void aml_res_end(struct aml_buf *b)
{
	aml_byte(b, AML_RES_END_TAG);
	aml_byte(b, 0);
}
