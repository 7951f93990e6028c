# ramfold: GNU make, no generated build system.
#
#   make            library (static, shared, pkg-config file), VMM, guest
#   make test       every test suite, then the unit suite under ASan+UBSan
#   make demo       4 guests for ~30 s with the live memory table
#   make bench      benchmarks: tables on stdout, CSV and SVG under build/bench/
#   make fuzz       the libFuzzer targets for a longer run
#   make install    PREFIX=/usr/local DESTDIR= (ramfold-run and ramfoldd in bin, the preload
#                   in lib/ramfold, ramfoldd's systemd units in lib/systemd/system)
#
# Every top-level target first runs scripts/deps.sh, which installs missing
# Debian packages (quiet when all are present).

.DEFAULT_GOAL := all
SHELL := /bin/bash

B       ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include

# The version lives in include/ramfold/version.h alone.
vpart = $(shell sed -n 's/^\#define RF_VERSION_$(1) \([0-9]*\)/\1/p' include/ramfold/version.h)
VERSION := $(call vpart,MAJOR).$(call vpart,MINOR).$(call vpart,PATCH)
SOMAJOR := $(call vpart,MAJOR)
SONAME  := libramfold.so.$(SOMAJOR)

export B
CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wno-missing-field-initializers
CFLAGS  ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -pthread -Iinclude -Isrc
# Tests reach the private headers of every layer (the library itself does not).
TEST_CFLAGS := $(BASE_CFLAGS) -Iswap -Iovercommit -Itests/helpers
LIB_CFLAGS  := $(BASE_CFLAGS) -fPIC -fvisibility=hidden
LIB_DEPS    := -lurcu-cds -lurcu-memb -lurcu-common -lxxhash -lnuma -ljemalloc -llz4 -lpthread
TEST_LIBS   := -lcmocka

LIB_SRCS := $(sort $(wildcard src/*.c swap/*.c ksm/*.c balloon/*.c overcommit/*.c lib/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
HELPER_SRCS := $(wildcard tests/helpers/*.c)

# The unit suite: the library's unit tests and the VMM's (tests/unit-vmm/,
# linked with the VMM objects they test: vmm/vmm.mk).
UNIT_SRCS  := $(wildcard tests/unit/test_*.c tests/unit-vmm/test_*.c)
UNIT_TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(UNIT_SRCS))
KVM_TESTS  := $(patsubst tests/kvm/%.c,$(B)/tests/kvm/%,$(wildcard tests/kvm/test_*.c))
E2E_TESTS  := $(patsubst tests/e2e/%.c,$(B)/tests/e2e/%,$(wildcard tests/e2e/test_*.c))

.PHONY: all deps lib test unit kvm e2e compat asan valgrind install uninstall demo bench fuzz fuzz-smoke \
	check-exports check-layers install-test format clean

deps:
	@scripts/deps.sh

# Installed before any rule runs, not only as the `deps` prerequisite: under
# `make -j` a prerequisite list is built in parallel, and on a fresh machine
# the first objects compiled while apt-get was still installing the headers
# they include (urcu/urcu-memb.h). Once per top-level make; not for clean or
# format, which need none of them.
ifeq ($(MAKELEVEL),0)
ifneq ($(filter-out clean format,$(or $(MAKECMDGOALS),all)),)
ifneq ($(shell scripts/deps.sh >&2 && echo ok),ok)
$(error deps: scripts/deps.sh failed to install the Debian packages the build needs (see above))
endif
endif
endif

all: deps lib
lib: $(B)/libramfold.a $(B)/$(SONAME) $(B)/libramfold.so $(B)/ramfold.pc

-include $(LIB_OBJS:.o=.d)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/libramfold.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/libramfold.so.$(VERSION): $(LIB_OBJS) src/libramfold.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libramfold.map \
		-Wl,--no-undefined -o $@ $(LIB_OBJS) $(LIB_DEPS)

$(B)/$(SONAME): $(B)/libramfold.so.$(VERSION)
	ln -sf $(<F) $@
$(B)/libramfold.so: $(B)/$(SONAME)
	ln -sf $(<F) $@

# Libs.private is LIB_DEPS in its order, so that an embedder linking
# libramfold.a (pkg-config --static) gets every library it needs, each after
# the ones that need it. Not Requires.private: Debian's liburcu .pc files put
# -lurcu-common before the flavour that needs it, and pkg-config reorders ours
# to match. -lc goes before -ljemalloc: the executable then looks malloc up in
# libc first, as it does when libramfold.so brings jemalloc in, and the
# library keeps its promise not to impose its allocator (src/arena.c).
$(B)/ramfold.pc: Makefile include/ramfold/version.h
	@mkdir -p $(@D)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
		'Name: ramfold' \
		'Description: Make KVM guest RAM go further: page dedup, virtio-balloon, overcommit, swap' \
		'Version: $(VERSION)' \
		'Libs: -L$${libdir} -lramfold' \
		'Libs.private: $(patsubst -ljemalloc,-lc -ljemalloc,$(LIB_DEPS))' \
		'Cflags: -I$${includedir}' > $@

install: all
	install -d $(DESTDIR)$(INCDIR)/ramfold $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/ramfold/*.h $(DESTDIR)$(INCDIR)/ramfold/
	install -m 644 $(B)/libramfold.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/libramfold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libramfold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libramfold.so
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' -e 's|^libdir=.*|libdir=$(LIBDIR)|' \
		-e 's|^includedir=.*|includedir=$(INCDIR)|' $(B)/ramfold.pc \
		> $(DESTDIR)$(LIBDIR)/pkgconfig/ramfold.pc

uninstall:
	rm -rf $(DESTDIR)$(INCDIR)/ramfold
	rm -f $(DESTDIR)$(LIBDIR)/libramfold.* $(DESTDIR)$(LIBDIR)/pkgconfig/ramfold.pc

# ---- tests -----------------------------------------------------------------
# Unit and KVM tests link the static library, so they can reach private
# functions through the private headers of every layer (TEST_CFLAGS).

$(B)/tests/%: tests/%.c $(HELPER_SRCS) $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(HELPER_SRCS) \
		$(B)/libramfold.a $(LIB_DEPS) $(TEST_LIBS)

# The seccomp test installs its allowlist with libseccomp.
$(B)/tests/kvm/test_seccomp: TEST_LIBS += -lseccomp

unit: all $(UNIT_TESTS)
	@scripts/run-tests.sh unit $(UNIT_TESTS)
kvm: all $(KVM_TESTS) $(TEST_PROGRAMS)
	@scripts/run-tests.sh kvm $(KVM_TESTS)
e2e: all $(E2E_TESTS) $(TEST_PROGRAMS)
	@scripts/run-tests.sh e2e $(E2E_TESTS)

# The swap suites again on the paths an older kernel takes (Linux < 6.7: no
# UFFDIO_MOVE, no PAGEMAP_SCAN), as in the nested rig's Debian 6.1 L1.
COMPAT_HIDE  := uffd-move,pagemap-scan
COMPAT_TESTS := $(B)/tests/unit/test_swap_pager $(B)/tests/unit/test_swap_race \
	$(B)/tests/unit/test_swap_sample \
	$(B)/tests/kvm/test_swap_kvm $(B)/tests/e2e/test_swap_vmm
# The KVM writer makes 3x10^5 writes here, 10^6 in `make kvm` (move mode): the
# copy-mode run is the longest test of the suite at 10^6 (85-93 s).
COMPAT_KVM_WRITES ?= 300000
compat: all $(COMPAT_TESTS) $(TEST_PROGRAMS)
	@RF_TEST_HIDE=$(COMPAT_HIDE) RF_SWAP_KVM_WRITES=$(COMPAT_KVM_WRITES) \
		scripts/run-tests.sh compat $(COMPAT_TESTS)

# ASan+UBSan: the library and the unit suite again, with metadata from libc's
# malloc (RF_ARENA_LIBC) so LeakSanitizer sees every allocation, and every
# page-state transition checked against pagemap (RF_DEBUG_TRANSITIONS,
# src/page_table.c).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined -DRF_ARENA_LIBC -DRF_DEBUG_TRANSITIONS
ASAN_OBJS  := $(LIB_SRCS:%.c=$(B)/asan/obj/%.o)
ASAN_UNIT  := $(patsubst tests/%.c,$(B)/asan/tests/%,$(UNIT_SRCS))
-include $(ASAN_OBJS:.o=.d)

$(B)/asan/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(ASAN_FLAGS) -MMD -MP -c $< -o $@
$(B)/asan/libramfold.a: $(ASAN_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(B)/asan/tests/%: tests/%.c $(HELPER_SRCS) $(B)/asan/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ASAN_FLAGS) -o $@ $< $(HELPER_SRCS) \
		$(B)/asan/libramfold.a $(LIB_DEPS) $(TEST_LIBS)

asan: deps $(ASAN_UNIT)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		scripts/run-tests.sh asan $(ASAN_UNIT)

# The unit suite under valgrind's memcheck (slower; not part of `make test`).
valgrind: unit
	@RF_TEST_WRAP="valgrind -q --error-exitcode=9 --leak-check=full" \
		scripts/run-tests.sh valgrind $(UNIT_TESTS)

check-exports: lib
	@scripts/check-exports.sh $(B)/libramfold.so.$(VERSION) src/libramfold.map

# The include graph against the layer table (docs/design.md).
check-layers:
	@scripts/check-layers.sh

install-test: lib
	@scripts/install-test.sh

# Every suite runs even if an earlier one fails; the summary decides.
TEST_ENV := RF_TEST_SUMMARY=$(abspath $(B))/test-summary
test:
	@$(MAKE) --no-print-directory -j$(NPROC) test-build
	@scripts/run-tests.sh --begin
	@$(TEST_ENV) $(MAKE) --no-print-directory unit
	@$(TEST_ENV) $(MAKE) --no-print-directory kvm
	@$(TEST_ENV) $(MAKE) --no-print-directory e2e
	@$(TEST_ENV) $(MAKE) --no-print-directory run-test
	@$(TEST_ENV) $(MAKE) --no-print-directory broker-test
	@$(TEST_ENV) $(MAKE) --no-print-directory compat
	@$(TEST_ENV) $(MAKE) --no-print-directory asan
	@$(TEST_ENV) $(MAKE) --no-print-directory stress-test
	@$(TEST_ENV) $(MAKE) --no-print-directory check-exports
	@$(TEST_ENV) $(MAKE) --no-print-directory check-layers
	@$(TEST_ENV) $(MAKE) --no-print-directory install-test
	@$(TEST_ENV) $(MAKE) --no-print-directory examples-test
	@$(TEST_ENV) $(MAKE) --no-print-directory abi-test
	@$(TEST_ENV) $(MAKE) --no-print-directory fuzz-smoke
	@scripts/run-tests.sh --end

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(B)

# Benchmarks and fuzz targets: each bench/*.mk adds a prerequisite to `bench`
# (bench: bench-dedup) and each tests/fuzz/*.mk to `fuzz` and `fuzz-smoke`.
# What every peer bench against KSM links beside its own source: the report,
# the host line (docs/dedup.md, "Fair measurement") and the /proc readers.
BENCH_REPORT := bench/dedup_report.c bench/host.c tests/helpers/vmm_proc.c
BENCH_REPORT_H := bench/dedup_report.h bench/host.h tests/helpers/vmm_proc.h
bench: all
	@mkdir -p $(B)/bench
	@echo "bench: results in $(B)/bench/:"; ls $(B)/bench/ 2>/dev/null | sed 's/^/  /'
fuzz: all
	@echo "fuzz: done"
fuzz-smoke: all

# Each component adds its own rules and programs here.
-include vmm/vmm.mk guest/guest.mk $(wildcard bench/*.mk) $(wildcard tests/fuzz/*.mk)
-include guest/linux/linux.mk tests/nested/nested.mk tests/qemu/qemu.mk
-include tests/stress/stress.mk
-include run/run.mk
-include ramfoldd/ramfoldd.mk
-include examples/examples.mk
-include tests/abi/abi.mk

# Every program `make test` runs, built first with one job per core (a
# plain `make test` built them one at a time: minutes of the run); the
# suites then run one after another, with no compiler beside their timings.
NPROC := $(shell nproc 2>/dev/null || echo 1)
TEST_BUILD := $(UNIT_TESTS) $(KVM_TESTS) $(E2E_TESTS) $(TEST_PROGRAMS) $(COMPAT_TESTS) \
	$(ASAN_UNIT) $(RUN_TESTS) $(RUN_TARGET) $(BROKER_TESTS) $(BROKER_SHARE_TESTS) \
	$(STRESS_BIN) $(STRESS_ASAN) $(B)/fuzz/fuzz_balloon $(B)/fuzz/fuzz_broker
.PHONY: test-build
test-build: all $(TEST_BUILD)
