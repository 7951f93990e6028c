# The Linux guest image (issue 8): Debian's kernel and busybox-static, fetched
# with apt-get download and unpacked under $(B)/linux-guest (nothing installed
# system-wide), and an initramfs with the virtio-mmio and virtio-balloon
# drivers, /init (init.sh) and the workload program rfwork.
#
#   make linux-guest   -> $(B)/linux-guest/vmlinuz, $(B)/linux-guest/initramfs.gz
#
# The osimage workload reads the files under /osimage: a fixed, sorted
# selection of real files of the same OS (the packaged file-system modules),
# about LINUX_OSIMAGE_KIB in total.
LG := $(B)/linux-guest
LINUX_OSIMAGE_KIB ?= 16384
LINUX_GUEST_MODULES := virtio_mmio virtio_balloon

.PHONY: linux-guest
linux-guest: $(LG)/initramfs.gz

$(LG)/.fetched: guest/linux/fetch-debs.sh
	@guest/linux/fetch-debs.sh $(LG)
	@touch $@

$(LG)/rfwork: guest/linux/rfwork.c guest/page_content.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -static -Iguest -o $@ $<

$(LG)/osimage/.done: $(LG)/.fetched
	@rm -rf $(@D) && mkdir -p $(@D)
	@total=0; for f in $$(cd $(LG)/kpkg/lib/modules/*/kernel && find fs -name '*.ko' | LC_ALL=C sort); do \
		[ $$total -ge $(LINUX_OSIMAGE_KIB) ] && break; \
		cp $(LG)/kpkg/lib/modules/*/kernel/$$f $(@D)/$$(echo $$f | tr / _); \
		total=$$((total + $$(du -k $(LG)/kpkg/lib/modules/*/kernel/$$f | cut -f1))); \
	done; echo "linux-guest: osimage: $$(ls $(@D) | wc -l) files, $$total KiB"
	@touch $@

$(LG)/initramfs.gz: $(LG)/.fetched $(LG)/rfwork $(LG)/osimage/.done guest/linux/init.sh \
		guest/linux/mkinitramfs.sh
	@guest/linux/mkinitramfs.sh -o $@ -k $(LG)/kpkg -b $(LG)/bb/bin/busybox \
		-i guest/linux/init.sh $(addprefix -m ,$(LINUX_GUEST_MODULES)) \
		-f $(LG)/rfwork:bin/rfwork -f $(LG)/osimage:osimage
