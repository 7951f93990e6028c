# The freestanding guest: build/guest/ramfold-guest (static ELF linked at 1 MiB,
# started by the VMM in 64-bit mode at CPL 3). No libc, no SSE, no red zone.
# Every guest/*.c is built; the guest's device drivers are named *_drv.c
# (balloon_drv.c, virtio_mmio_drv.c), apart from the device side in vmm/
# and the library.
GUEST_SRCS := $(wildcard guest/*.c) guest/start.S
GUEST_OBJS := $(patsubst guest/%,$(B)/guest/obj/%.o,$(GUEST_SRCS))
GUEST_CFLAGS := -std=c11 $(WARN) -O2 -g -ffreestanding -fno-builtin -nostdlib -static -fno-pic \
	-fno-pie -mno-red-zone -mgeneral-regs-only -fno-stack-protector -fno-asynchronous-unwind-tables \
	-mcmodel=small -Iguest
GUEST := $(B)/guest/ramfold-guest

all: $(GUEST)
TEST_PROGRAMS += $(GUEST)

-include $(GUEST_OBJS:.o=.d)

$(B)/guest/obj/%.c.o: guest/%.c
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -MMD -MP -c $< -o $@
$(B)/guest/obj/%.S.o: guest/%.S
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

$(GUEST): $(GUEST_OBJS) guest/guest.ld
	$(CC) $(GUEST_CFLAGS) -no-pie -Wl,-T,guest/guest.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments -o $@ $(GUEST_OBJS) -lgcc
