# The nested rig (issue 8): Linux guests under ramfold-vmm, inside a Linux
# guest ("L1") that QEMU runs with TCG and emulated AMD SVM, because this
# machine's KVM (kvm_pvm) cannot run a guest kernel itself.
#
#   make test-linux   the scenarios short, balloon, stress, direct, qemu (NESTED_SCENARIOS=...);
#                     direct runs demo-linux's runner (run-direct.sh) inside L1
#   make demo-linux   the same directly on a host whose KVM runs ring 0 natively
#   make test         runs the short one as part of the e2e suite
#                     (tests/nested/test_nested_short.c)
#
# QEMU (qemu-system-x86 from Debian) is installed by these targets only.
NESTED := $(B)/nested
NESTED_SCENARIOS ?= short balloon stress direct qemu
NESTED_TIMEOUT ?= 900

.PHONY: test-linux nested-deps nested-image
nested-deps:
	@scripts/deps.sh qemu-system-x86

nested-image: $(NESTED)/l1-initramfs.gz

# L1's initramfs: busybox, the KVM modules, ramfold-vmm with its shared
# libraries (as ldd lists them), the L2 kernel and initramfs, the scenarios.
$(NESTED)/l1-initramfs.gz: $(LG)/initramfs.gz $(VMM) tests/nested/l1-init.sh \
		tests/nested/run-direct.sh $(wildcard tests/nested/scenarios/*.sh) \
		guest/linux/mkinitramfs.sh
	@mkdir -p $(@D)
	@libs=$$(ldd $(VMM) | awk '$$2 == "=>" && $$3 ~ /^\// {print $$3} $$1 ~ /^\// {print $$1}' | \
		sort -u | sed 's|.*|-f &:&|'); \
	guest/linux/mkinitramfs.sh -o $@ -k $(LG)/kpkg -b $(LG)/bb/bin/busybox \
		-i tests/nested/l1-init.sh -m kvm_amd \
		-f $(VMM):bin/ramfold-vmm $$libs \
		-f $(LG)/vmlinuz:l2/vmlinuz -f $(LG)/initramfs.gz:l2/initramfs.gz \
		-f tests/nested/scenarios:scenarios -f tests/nested/run-direct.sh:run-direct.sh

# The qemu scenario's L1 (issue 15) has the base image's contents and, laid out
# as a build tree under /rf (tests/qemu/e2e.sh runs there as on this host),
# Debian's qemu-system-x86_64 with its libraries and microvm firmware, bash,
# ramfold-run with its preload and libramfold.so, the QMP client and the
# QEMU test scripts. A separate image, so the other scenarios boot no slower.
NESTED_QEMU_BINS := $(B)/ramfold-run $(B)/libramfold-preload.so $(B)/$(SONAME) \
	$(B)/tests/qemu/qmp
nested-qemu-image: $(NESTED)/l1-qemu-initramfs.gz
$(NESTED)/l1-qemu-initramfs.gz: $(LG)/initramfs.gz $(VMM) $(NESTED_QEMU_BINS) \
		tests/nested/l1-init.sh $(wildcard tests/nested/scenarios/*.sh) \
		tests/qemu/lib.sh tests/qemu/e2e.sh guest/linux/mkinitramfs.sh
	@mkdir -p $(@D)
	@q=$$(command -v qemu-system-x86_64); bash=$$(command -v bash); \
	libs=$$(for f in $(VMM) $$q $$bash $$(command -v nice) $(B)/ramfold-run $(B)/libramfold-preload.so \
			$(B)/$(SONAME) $(B)/tests/qemu/qmp; do ldd $$f; done | \
		awk '$$2 == "=>" && $$3 ~ /^\// {print $$3} $$1 ~ /^\// {print $$1}' | \
		sort -u | sed 's|.*|-f &:&|'); \
	guest/linux/mkinitramfs.sh -o $@ -k $(LG)/kpkg -b $(LG)/bb/bin/busybox \
		-i tests/nested/l1-init.sh -m kvm_amd \
		-f $(VMM):bin/ramfold-vmm $$libs -f $$q:usr/bin/qemu-system-x86_64 -f $$bash:bin/bash \
		-f $$(command -v nice):usr/bin/nice \
		-f /usr/share/qemu/bios-microvm.bin:usr/share/qemu/bios-microvm.bin \
		-f $(LG)/vmlinuz:l2/vmlinuz -f $(LG)/initramfs.gz:l2/initramfs.gz \
		-f tests/nested/scenarios:scenarios -f tests/nested/run-direct.sh:run-direct.sh \
		$(foreach f,$(NESTED_QEMU_BINS),-f $(f):rf/$(f:$(B)/%=build/%)) \
		-f tests/qemu/lib.sh:rf/tests/qemu/lib.sh -f tests/qemu/e2e.sh:rf/tests/qemu/e2e.sh

test-linux: all nested-deps nested-image $(if $(filter qemu,$(NESTED_SCENARIOS)),nested-qemu-image)
	@rc=0; for s in $(NESTED_SCENARIOS); do \
		tests/nested/run.sh $$s $(NESTED_TIMEOUT) || rc=1; \
	done; exit $$rc

# `make test`: the short scenario runs in the e2e suite. The binary is built
# by the generic tests rule; QEMU and the L1 image come first.
NESTED_SHORT := $(B)/tests/nested/test_nested_short
E2E_TESTS += $(NESTED_SHORT)
e2e: nested-deps nested-image $(NESTED_SHORT)

# The same scenarios directly on this host, for hosts whose KVM runs guest
# ring 0 natively; on kvm_pvm it says so and stops.
.PHONY: demo-linux
demo-linux: all linux-guest
	@rc=0; for s in $(filter-out debug direct,$(NESTED_SCENARIOS)); do \
		tests/nested/run-direct.sh $$s || rc=1; \
	done; exit $$rc
