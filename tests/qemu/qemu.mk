# tests/qemu (issue 15): Linux guests under Debian's qemu-system-x86_64 (TCG),
# wrapped in ramfold-run. tests/qemu/lib.sh boots them (QMP, serial log,
# virtio-balloon); tests/qemu/qmp.c is the QMP client it uses.
#
#   make test            the e2e suite runs test_qemu_e2e (tests/qemu/e2e.sh),
#                        which skips, saying why, while ramfold-run is not built
#   make bench-qemu      bench/qemu.mk
#
# QEMU (qemu-system-x86 from Debian) is installed by these targets only.
QEMU_QMP := $(B)/tests/qemu/qmp
QEMU_E2E := $(B)/tests/qemu/test_qemu_e2e

.PHONY: qemu-deps
qemu-deps:
	@scripts/deps.sh qemu-system-x86

# Not a cmocka test: no helpers, no library.
$(QEMU_QMP): tests/qemu/qmp.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $<

E2E_TESTS += $(QEMU_E2E)
e2e: qemu-deps linux-guest $(QEMU_QMP) $(QEMU_E2E)
