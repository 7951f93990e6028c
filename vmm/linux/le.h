/* SPDX-License-Identifier: MIT */
/*
 * Little-endian fields of n bytes (n <= 8) at any alignment: the bzImage
 * setup header and boot_params (boot.c) and the ACPI tables
 * (acpi_tables.c) are laid out byte by byte, whatever the host's order.
 */
#ifndef VMM_LINUX_LE_H
#define VMM_LINUX_LE_H

#include <stdint.h>

static inline uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
