/* SPDX-License-Identifier: MIT */
/*
 * A small encoder for ACPI Machine Language (AML), enough to describe
 * virtio-mmio devices and the \_S5 sleep state to a Linux guest: names,
 * integers, strings, buffers, packages, scopes, devices, methods, and the
 * resource descriptors _CRS needs (Memory32Fixed, Extended Interrupt).
 * Encodings follow the ACPI specification, section 20 (AML grammar) and
 * section 6.4 (resource data types).
 *
 * Objects that enclose others (Scope, Device, Method, Package, Buffer) are
 * prefixed by a PkgLength that counts their whole body, so the body is built
 * first in its own aml_buf and then appended with the matching aml_*_wrap()
 * call.
 *
 * Errors are sticky: after a failed allocation or a bad argument (a name
 * segment that is not 1-4 valid characters, a length past what PkgLength can
 * encode) every later call is a no-op and aml_buf.err holds -ENOMEM or
 * -EINVAL; check it once at the end.
 */
#ifndef RF_VMM_ACPI_AML_H
#define RF_VMM_ACPI_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml_buf {
	uint8_t *data;
	size_t len, cap;
	int err; /* 0, or the first error (-ENOMEM, -EINVAL) */
};

void aml_buf_init(struct aml_buf *b);
void aml_buf_free(struct aml_buf *b);

/* Raw bytes. */
void aml_bytes(struct aml_buf *b, const void *p, size_t n);
/* Appends another buffer (and takes on its error, if any). */
void aml_append(struct aml_buf *b, const struct aml_buf *child);

/*
 * PkgLength for a body of @body bytes: the encoded length counts itself, in
 * 1 to 4 bytes (the fewest that fit). Writes to @out, returns the number of
 * bytes, or -EINVAL when the total exceeds 2^28 - 1.
 */
int aml_pkglength(size_t body, uint8_t out[4]);

/* An integer in the shortest encoding: Zero, One, Ones, Byte/Word/DWord/QWord. */
void aml_integer(struct aml_buf *b, uint64_t v);
/*
 * EISAID("PNP0501"): three capitals and four hex digits compressed into the
 * 32-bit form _HID accepts (-EINVAL for anything else).
 */
void aml_eisaid(struct aml_buf *b, const char *id);
/* A string constant (ASCII, NUL-terminated in AML). */
void aml_string(struct aml_buf *b, const char *s);
/*
 * A NameString: optional leading '\' (root) or '^' (parent), then segments
 * separated by '.', each 1-4 characters of [A-Z0-9_] (first not a digit),
 * padded with '_' to 4.
 */
void aml_namestring(struct aml_buf *b, const char *path);

/* Name(path, <object already encoded in obj>) */
void aml_name(struct aml_buf *b, const char *path, const struct aml_buf *obj);
/* Name(path, integer) and Name(path, "string"), the common cases. */
void aml_name_integer(struct aml_buf *b, const char *path, uint64_t v);
void aml_name_string(struct aml_buf *b, const char *path, const char *s);

/* Buffer() { bytes }: the BufferSize is the byte count. */
void aml_buffer(struct aml_buf *b, const void *p, size_t n);
/* Package(n) { elements encoded in @elems }; n = @count (at most 255). */
void aml_package_wrap(struct aml_buf *b, unsigned count, const struct aml_buf *elems);
/* Scope(path) { body } */
void aml_scope_wrap(struct aml_buf *b, const char *path, const struct aml_buf *body);
/* Device(path) { body } */
void aml_device_wrap(struct aml_buf *b, const char *path, const struct aml_buf *body);
/* Method(path, nargs (0-7), Serialized or not) { body } */
void aml_method_wrap(struct aml_buf *b, const char *path, unsigned nargs, int serialized,
		     const struct aml_buf *body);
/* Return(<object already encoded in obj>) */
void aml_return(struct aml_buf *b, const struct aml_buf *obj);

/* Resource descriptors, for a ResourceTemplate (a Buffer ending in an End Tag). */
void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len, int writable);

/*
 * QWord Address Space Descriptor for a memory range anywhere in the 64-bit
 * space (fixed, positive decode, non-cacheable, consumed by the device).
 */
void aml_res_qword_memory(struct aml_buf *b, uint64_t base, uint64_t len, int writable);

enum {
	AML_IRQ_CONSUMER = 1 << 0,
	AML_IRQ_EDGE = 1 << 1,	     /* else level-triggered */
	AML_IRQ_ACTIVE_LOW = 1 << 2, /* else active-high */
	AML_IRQ_SHARED = 1 << 3,     /* else exclusive */
	AML_IRQ_WAKE_CAPABLE = 1 << 4,
};
/* I/O port range with 16-bit decode, fixed at @base (small IO descriptor). */
void aml_res_io(struct aml_buf *b, uint16_t base, uint8_t len);
/* IRQNoFlags: one ISA IRQ (0-15), edge-triggered, active-high (small IRQ descriptor). */
void aml_res_irq_noflags(struct aml_buf *b, unsigned irq);
/* Extended Interrupt descriptor with one interrupt number. */
void aml_res_interrupt(struct aml_buf *b, unsigned flags, uint32_t irq);
/* End Tag, with checksum 0 ("the checksum is treated as correct"). */
void aml_res_end(struct aml_buf *b);

#endif
