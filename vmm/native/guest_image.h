/* SPDX-License-Identifier: MIT */
/*
 * The guest image: a static x86-64 ELF executable whose loadable segments
 * lie between RF_IMAGE_GPA and the end of guest RAM. Read and checked once,
 * then copied into each VM.
 */
#ifndef VMM_GUEST_IMAGE_H
#define VMM_GUEST_IMAGE_H

#include <stdint.h>

struct vmm;

/* 0, or -1 after one clear line ("guest image X: not an ELF file"). */
int guest_image_load(struct vmm *vmm, const char *path);
/* Copy the segments into @ram (zeroing .bss). */
void guest_image_copy(const struct vmm *vmm, uint8_t *ram);
void guest_image_free(struct vmm *vmm);

#endif
