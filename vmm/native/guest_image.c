/* SPDX-License-Identifier: MIT */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/vmm.h"
#include "native/guest_image.h"

#define MAX_IMAGE (64ull << 20)

int guest_image_load(struct vmm *vmm, const char *path)
{
	const Elf64_Ehdr *eh;
	struct stat st;
	uint8_t *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		vmm_errorf("guest image %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		vmm_errorf("guest image %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size < sizeof(Elf64_Ehdr) || (uint64_t)st.st_size > MAX_IMAGE) {
		vmm_errorf("guest image %s: size %lld is not that of a guest image (64 B..64 MiB)",
			   path, (long long)st.st_size);
		close(fd);
		return -1;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		vmm_errorf("guest image %s: read failed", path);
		free(buf);
		close(fd);
		return -1;
	}
	close(fd);
	eh = (const Elf64_Ehdr *)buf;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG)) {
		vmm_errorf("guest image %s: not an ELF file", path);
		goto bad;
	}
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC) {
		vmm_errorf("guest image %s: not a static x86-64 ELF executable", path);
		goto bad;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phoff > (uint64_t)st.st_size ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > (uint64_t)st.st_size - eh->e_phoff) {
		vmm_errorf("guest image %s: program headers out of the file", path);
		goto bad;
	}
	vmm->nr_segs = 0;
	vmm->image_end = RF_IMAGE_GPA;
	for (unsigned int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(buf + eh->e_phoff) + i;

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		if (vmm->nr_segs == sizeof(vmm->segs) / sizeof(vmm->segs[0])) {
			vmm_errorf("guest image %s: too many loadable segments", path);
			goto bad;
		}
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > (uint64_t)st.st_size ||
		    ph->p_filesz > (uint64_t)st.st_size - ph->p_offset) {
			vmm_errorf("guest image %s: segment %u lies outside the file", path, i);
			goto bad;
		}
		if (ph->p_paddr < RF_IMAGE_GPA || ph->p_memsz > MAX_IMAGE ||
		    ph->p_paddr > RF_IMAGE_GPA + MAX_IMAGE - ph->p_memsz) {
			vmm_errorf("guest image %s: segment %u at 0x%llx is outside the image area "
				   "(0x%llx, 64 MiB)",
				   path, i, (unsigned long long)ph->p_paddr,
				   (unsigned long long)RF_IMAGE_GPA);
			goto bad;
		}
		vmm->segs[vmm->nr_segs++] =
		    (struct vmm_image_seg){ph->p_paddr, ph->p_filesz, ph->p_memsz, ph->p_offset};
		if (ph->p_paddr + ph->p_memsz > vmm->image_end)
			vmm->image_end = ph->p_paddr + ph->p_memsz;
	}
	if (!vmm->nr_segs) {
		vmm_errorf("guest image %s: no loadable segment", path);
		goto bad;
	}
	if (eh->e_entry < RF_IMAGE_GPA || eh->e_entry >= vmm->image_end) {
		vmm_errorf("guest image %s: entry point 0x%llx is outside the image", path,
			   (unsigned long long)eh->e_entry);
		goto bad;
	}
	vmm->image = buf;
	vmm->image_entry = eh->e_entry;
	vmm->image_file_size = (uint64_t)st.st_size;
	return 0;
bad:
	free(buf);
	return -1;
}

void guest_image_copy(const struct vmm *vmm, uint8_t *ram)
{
	for (unsigned int i = 0; i < vmm->nr_segs; i++) {
		const struct vmm_image_seg *s = &vmm->segs[i];

		memcpy(ram + s->gpa, vmm->image + s->off, s->filesz);
		memset(ram + s->gpa + s->filesz, 0, s->memsz - s->filesz);
	}
}

void guest_image_free(struct vmm *vmm)
{
	free(vmm->image);
	vmm->image = NULL;
}
