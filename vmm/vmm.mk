# The demo VMM: build/ramfold-vmm, an embedder of libramfold like any other
# (public headers only), with jemalloc as its malloc. `make demo` runs it.
# Its sources are in one folder per role (docs/vmm.md): core/, native/,
# linux/, devices/, ctl/, modules/; a file includes another's header by its
# path under vmm/ ("core/vmm.h"), hence -iquote vmm.
VMM_SRCS := $(sort $(wildcard vmm/*/*.c))
VMM_OBJS := $(VMM_SRCS:%.c=$(B)/obj/%.o)
VMM := $(B)/ramfold-vmm
VMM_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -pthread -Iinclude -iquote vmm

all: $(VMM)
TEST_PROGRAMS += $(VMM)

-include $(VMM_OBJS:.o=.d)

# vmm/ sees include/ (public API) only, never src/.
$(B)/obj/vmm/%.o: vmm/%.c
	@mkdir -p $(@D)
	$(CC) $(VMM_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(VMM): $(VMM_OBJS) $(B)/libramfold.a
	$(CC) $(CFLAGS) -pthread -o $@ $(VMM_OBJS) $(B)/libramfold.a $(LIB_DEPS) -lm

# The VMM's unit tests (tests/unit-vmm/, run in the unit suite and under
# ASan with it): each links the VMM objects it tests, built as for the VMM
# (and again with ASAN_FLAGS for the ASan run), plus the test helpers and
# the library like every unit test.
$(B)/asan/obj/vmm/%.o: vmm/%.c
	@mkdir -p $(@D)
	$(CC) $(VMM_CFLAGS) $(ASAN_FLAGS) -MMD -MP -c $< -o $@
-include $(patsubst $(B)/obj/%,$(B)/asan/obj/%,$(VMM_OBJS:.o=.d))

$(B)/tests/unit-vmm/%: tests/unit-vmm/%.c $(HELPER_SRCS) $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -iquote vmm $(CFLAGS) -o $@ $< $(filter %.o,$^) $(HELPER_SRCS) \
		$(B)/libramfold.a $(LIB_DEPS) $(TEST_LIBS)
$(B)/asan/tests/unit-vmm/%: tests/unit-vmm/%.c $(HELPER_SRCS) $(B)/asan/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -iquote vmm $(ASAN_FLAGS) -o $@ $< $(filter %.o,$^) $(HELPER_SRCS) \
		$(B)/asan/libramfold.a $(LIB_DEPS) $(TEST_LIBS)

# vmm_unit_test(TEST, OBJECTS): the VMM objects (paths under vmm/, no .o) TEST links.
define vmm_unit_test
$(B)/tests/unit-vmm/$(1): $(2:%=$(B)/obj/vmm/%.o)
$(B)/asan/tests/unit-vmm/$(1): $(2:%=$(B)/asan/obj/vmm/%.o)
endef
$(eval $(call vmm_unit_test,test_acpi_aml,linux/acpi_aml))
$(eval $(call vmm_unit_test,test_acpi_tables,linux/acpi_aml linux/acpi_tables))
$(eval $(call vmm_unit_test,test_linux_boot,linux/boot))
$(eval $(call vmm_unit_test,test_linux_boot_uart,devices/uart_8250))
$(eval $(call vmm_unit_test,test_vmm_json,core/json core/util devices/mmio_bus))

# 4 guests of 256 MiB for ~30 s with the live table; CSV and console logs
# under build/demo/. DEMO_SECONDS=10 make demo for a shorter run. Dedup is on:
# the two osimage guests share a sharing domain, the others merge within
# themselves (and zero pages). DEMO_DEDUP=off shows the same guests without it.
DEMO_SECONDS ?= 30
DEMO_DEDUP ?= domains
.PHONY: demo
demo: all
	@mkdir -p $(B)/demo
	$(VMM) --duration $(DEMO_SECONDS) --table --log-dir $(B)/demo \
		--stats-csv $(B)/demo/stats.csv --ctl $(B)/demo/ctl.sock --dedup $(DEMO_DEDUP) \
		--vm name=os0,mem=256M,workload=osimage,mib=160,domain=os \
		--vm name=os1,mem=256M,workload=osimage,mib=160,domain=os \
		--vm name=dup0,mem=256M,workload=dup,mib=192,dup=60,zero=20 \
		--vm name=check0,mem=256M,workload=memcheck,mib=160
	@echo "make demo: console logs and stats.csv in $(B)/demo/"
