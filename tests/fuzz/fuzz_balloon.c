/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a hostile guest driving the balloon device through its
 * virtio-mmio registers, the own-transport calls, and its own RAM (rings,
 * descriptors, PFN lists, stats, reported ranges), interleaved with the host
 * side (targets, stats ticks). Built with ASan+UBSan: any out-of-bounds
 * access, overflow or crash is a finding; so is a broken invariant (more
 * ballooned bytes than RAM), which aborts.
 *
 * Input: a sequence of operations, each an opcode byte and its arguments
 * (little-endian), until the input runs out:
 *   0 mmio write   off:u16 width:u8 value:u64
 *   1 mmio read    off:u16 width:u8
 *   2 notify       queue:u8
 *   3 guest memory gpa:u32 len:u8 bytes[len]
 *   4 target       pages:u32
 *   5 tick         mode:u16                   (mode % 3: 0 polling off, 1 every
 *                                             1 ms, 2 the same after waiting 1.1 ms)
 *   6 handshake    features:u64 qsize:u16     (rings at QBASE + q * QSTRIDE)
 *   7 config API   off:u64 width:u8 write:u8 value:u64
 *   8 pfn buffer   queue:u8 n:u8 pfns:u32[n]  (one descriptor, published)
 *   9 report range queue:u8 gpa:u32 len:u32   (one device-writable descriptor)
 *  10 own status   status:u8 features:u64     (rf_balloon_set_driver_features, _set_status)
 *  11 own queue    queue:u8 size:u16 desc:u64 avail:u64 used:u64 (rf_balloon_queue_setup)
 *  12 migrate      mode:u8 off:u16 n:u8 bytes[n]
 *                  rf_balloon_save, then a guest reset, a new device on the
 *                  same RAM (as a destination with the RAM migrated) and
 *                  rf_balloon_restore of the image: the real one with bytes[n]
 *                  written over it at off (mode & 4: bytes[n] alone, a
 *                  hostile image from the stream), resealed (its length
 *                  and CRC made right, so the checks behind them are
 *                  reached) if mode & 1. The operations after it drive
 *                  the restored device: a state that passed the checks but
 *                  is inconsistent shows up there. A refused image must
 *                  leave the new device untouched (aborts otherwise).
 *  13 pfn buffer   as 8, not notified (a buffer pending at a save)
 * Each input gets a fresh VM (1 MiB at gpa 0, 64 KiB at 2 MiB: a hole
 * between) and a fresh device; the engine is shared.
 */
#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include <ramfold/ramfold.h>

#define RAM1	(1u << 20)
#define GPA2	(2u << 20)
#define RAM2	(64u << 10)
#define QBASE	0x40000u
#define QSTRIDE 0x8000u
#define BUFS	0x80000u

static rf_engine *engine;

struct in {
	const uint8_t *p;
	size_t n;
};

static int take(struct in *in, void *out, size_t len)
{
	if (in->n < len)
		return -1;
	memcpy(out, in->p, len);
	in->p += len;
	in->n -= len;
	return 0;
}

static void *gpa_ptr(rf_vm *vm, uint64_t gpa, uint64_t len)
{
	void *p;

	return rf_vm_gpa_to_hva(vm, gpa, len, &p) ? NULL : p;
}

static void w32(rf_balloon *b, uint32_t off, uint32_t v)
{
	v = htole32(v);
	rf_balloon_mmio_write(b, off, &v, 4);
}

static void handshake(rf_balloon *b, uint64_t features, uint16_t qsize)
{
	w32(b, 0x70, 0);
	w32(b, 0x70, 3);
	w32(b, 0x24, 0);
	w32(b, 0x20, (uint32_t)features);
	w32(b, 0x24, 1);
	w32(b, 0x20, (uint32_t)(features >> 32));
	w32(b, 0x70, 11);
	for (uint32_t q = 0; q < 5; q++) {
		uint32_t base = QBASE + q * QSTRIDE;

		w32(b, 0x30, q);
		w32(b, 0x38, qsize);
		w32(b, 0x80, base);
		w32(b, 0x84, 0);
		w32(b, 0x90, base + 0x1000);
		w32(b, 0x94, 0);
		w32(b, 0xa0, base + 0x2000);
		w32(b, 0xa4, 0);
		w32(b, 0x44, 1);
	}
	w32(b, 0x70, 15);
}

/* Publish one descriptor on queue @q as a driver would (reading the avail
 * index back from guest memory, which the input may also have scribbled). */
static void publish(rf_vm *vm, unsigned int q, uint16_t qsize, uint64_t addr, uint32_t len,
		    uint16_t flags)
{
	uint32_t base = QBASE + (q % 5) * QSTRIDE;
	uint8_t *desc = gpa_ptr(vm, base, 16), *avail = gpa_ptr(vm, base + 0x1000, 4);
	uint16_t idx, slot, size = qsize && !(qsize & (qsize - 1)) && qsize <= 256 ? qsize : 256;
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), zero = 0, head;

	if (!desc || !avail)
		return;
	memcpy(&idx, avail + 2, 2);
	idx = le16toh(idx);
	head = idx % size;
	desc = gpa_ptr(vm, base + 16u * head, 16);
	memcpy(desc, &a, 8);
	memcpy(desc + 8, &l, 4);
	memcpy(desc + 12, &f, 2);
	memcpy(desc + 14, &zero, 2);
	slot = htole16(head);
	memcpy(gpa_ptr(vm, base + 0x1000 + 4 + 2u * (idx % size), 2), &slot, 2);
	idx = htole16((uint16_t)(idx + 1));
	memcpy(avail + 2, &idx, 2);
}

/* Image offsets (balloon/balloon_save.c): the total length and the CRC. */
#define IMG_LEN 8u
#define IMG_CRC 12u
#define IMG_MAX (64u << 10)

static void reseal(uint8_t *img, size_t len)
{
	uint32_t v;

	if (len < IMG_CRC + 4)
		return;
	v = htole32((uint32_t)len);
	memcpy(img + IMG_LEN, &v, 4);
	memset(img + IMG_CRC, 0, 4);
	v = htole32((uint32_t)crc32(0, img, (uInt)len));
	memcpy(img + IMG_CRC, &v, 4);
}

/* Op 12: @b saved, reset and freed; a new device on @vm takes the image. */
static rf_balloon *migrate(rf_balloon *b, rf_vm *vm, const struct rf_balloon_config *bc,
			   uint8_t mode, uint16_t off, const uint8_t *bytes, uint8_t n)
{
	static uint8_t img[IMG_MAX];
	struct rf_balloon_info info = {.size = sizeof(info)};
	size_t len = 0;
	rf_balloon *nb;

	if (mode & 4) {
		memcpy(img, bytes, n);
		len = n;
	} else {
		if (rf_balloon_save(b, img, sizeof(img), &len))
			abort(); /* a live device always saves: the image fits */
		for (uint8_t i = 0; i < n && len; i++)
			img[(off + i) % len] = bytes[i];
	}
	if (mode & 1)
		reseal(img, len);
	/* The source's ballooned pages go back to the guest (a reset), so the
	 * VM is a destination with the RAM as migrated. */
	rf_balloon_set_status(b, 0);
	rf_balloon_free(b);
	if (rf_balloon_new(vm, NULL, bc, &nb))
		abort();
	if (rf_balloon_restore(nb, img, len) == 0)
		return nb;
	if (rf_balloon_info(nb, &info))
		abort();
	if (info.status || info.ballooned_bytes || info.features_negotiated)
		abort(); /* a refused image changed the device */
	return nb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rf_vm_config vc;
	struct rf_balloon_config bc;
	struct rf_balloon_info info = {.size = sizeof(info)};
	struct in in = {data, size};
	uint16_t qsize = 256;
	rf_balloon *b;
	rf_vm *vm;
	void *hva;
	uint8_t op;

	if (!engine) {
		struct rf_engine_config ec;

		rf_engine_config_init(&ec);
		ec.log_level = RF_LOG_ERR; /* the rate limiter is still exercised */
		if (rf_engine_new(&ec, &engine))
			abort();
	}
	rf_vm_config_init(&vc);
	vc.ram_bytes = RAM1 + RAM2;
	if (rf_vm_new(engine, "fz", &vc, &vm) || rf_vm_map_ram(vm, 0, RAM1, &hva) ||
	    rf_vm_map_ram(vm, GPA2, RAM2, &hva))
		abort();
	rf_balloon_config_init(&bc);
	bc.stats_interval_ms = 1;
	if (rf_balloon_new(vm, NULL, &bc, &b))
		abort();

	while (take(&in, &op, 1) == 0) {
		switch (op % 14) {
		case 0: {
			uint16_t off;
			uint8_t w;
			uint64_t v;

			if (take(&in, &off, 2) || take(&in, &w, 1) || take(&in, &v, 8))
				goto done;
			rf_balloon_mmio_write(b, off % 0x240, &v, 1u << (w & 3));
			break;
		}
		case 1: {
			uint16_t off;
			uint8_t w;
			uint64_t v;

			if (take(&in, &off, 2) || take(&in, &w, 1))
				goto done;
			rf_balloon_mmio_read(b, off % 0x240, &v, 1u << (w & 3));
			break;
		}
		case 2: {
			uint8_t q;

			if (take(&in, &q, 1))
				goto done;
			rf_balloon_queue_notify(b, q % 8);
			break;
		}
		case 3: {
			uint32_t gpa;
			uint8_t len;
			void *p;

			if (take(&in, &gpa, 4) || take(&in, &len, 1) || in.n < len)
				goto done;
			p = gpa_ptr(vm, gpa % RAM1, len);
			if (p)
				memcpy(p, in.p, len);
			in.p += len;
			in.n -= len;
			break;
		}
		case 4: {
			uint32_t pages;

			if (take(&in, &pages, 4))
				goto done;
			rf_balloon_set_target(b, (uint64_t)pages << 12);
			break;
		}
		case 5: {
			uint16_t ms;

			if (take(&in, &ms, 2))
				goto done;
			/* 0: off, 1: 1 ms, 2: 1 ms and wait for it (the held
			 * stats buffer goes back to the guest). */
			rf_balloon_set_stats_interval(b, ms % 3 ? 1 : 0);
			if (ms % 3 == 2) {
				struct timespec ts = {0, 1100000};

				nanosleep(&ts, NULL);
			}
			rf_balloon_tick(b, NULL);
			break;
		}
		case 6: {
			uint64_t f;

			if (take(&in, &f, 8) || take(&in, &qsize, 2))
				goto done;
			handshake(b, f, qsize);
			break;
		}
		case 7: {
			uint64_t off, v;
			uint8_t w, wr;

			if (take(&in, &off, 8) || take(&in, &w, 1) || take(&in, &wr, 1) ||
			    take(&in, &v, 8))
				goto done;
			if (wr & 1)
				rf_balloon_config_write(b, off, &v, 1u << (w & 3));
			else
				rf_balloon_config_read(b, off, &v, 1u << (w & 3));
			break;
		}
		case 8:
		case 13: {
			uint8_t q, n;
			uint32_t buf = BUFS;
			uint8_t *p;

			if (take(&in, &q, 1) || take(&in, &n, 1) || in.n < 4u * n)
				goto done;
			p = gpa_ptr(vm, buf, 4u * n + 1);
			memcpy(p, in.p, 4u * n);
			in.p += 4u * n;
			in.n -= 4u * n;
			publish(vm, q, qsize, buf, 4u * n, 0);
			if (op % 14 == 8)
				rf_balloon_queue_notify(b, q % 5);
			break;
		}
		case 9: {
			uint8_t q;
			uint32_t gpa, len;

			if (take(&in, &q, 1) || take(&in, &gpa, 4) || take(&in, &len, 4))
				goto done;
			publish(vm, q, qsize, gpa, len, 2);
			rf_balloon_queue_notify(b, q % 5);
			break;
		}
		case 10: {
			uint8_t st;
			uint64_t f;

			if (take(&in, &st, 1) || take(&in, &f, 8))
				goto done;
			rf_balloon_set_driver_features(b, f);
			rf_balloon_set_status(b, st);
			break;
		}
		case 11: {
			uint8_t q;
			uint16_t size;
			uint64_t d, a, u;

			if (take(&in, &q, 1) || take(&in, &size, 2) || take(&in, &d, 8) ||
			    take(&in, &a, 8) || take(&in, &u, 8))
				goto done;
			rf_balloon_queue_setup(b, q % 8, size, d, a, u);
			break;
		}
		case 12: {
			uint8_t mode, n;
			uint16_t off;

			if (take(&in, &mode, 1) || take(&in, &off, 2) || take(&in, &n, 1) ||
			    in.n < n)
				goto done;
			b = migrate(b, vm, &bc, mode, off, in.p, n);
			in.p += n;
			in.n -= n;
			break;
		}
		}
	}
done:
	rf_balloon_info(b, &info);
	if (info.ballooned_bytes + info.reported_bytes > RAM1 + RAM2)
		abort(); /* the table can never account more than the guest has */
	rf_balloon_free(b);
	rf_vm_free(vm);
	return 0;
}
