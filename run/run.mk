# ramfold-run and libramfold-preload.so (docs/qemu.md): ramfold in place of
# KSM for an unmodified VMM. Like vmm/, a consumer of the public API only
# (include/ramfold/); both reuse the VMM's JSON and size parsers
# (vmm/core/json.c, vmm/core/util.c), built again here as position-independent
# code for the preload.
RUN := $(B)/ramfold-run
RUN_PRELOAD := $(B)/libramfold-preload.so
RUN_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -pthread -Iinclude -iquote vmm -iquote run -fPIC
RUN_PRELOAD_SRCS := run/preload.c run/service.c run/options.c vmm/core/json.c vmm/core/util.c \
	vmm/ctl/wire.c
RUN_PRELOAD_OBJS := $(RUN_PRELOAD_SRCS:%.c=$(B)/obj/run-pic/%.o)
RUN_MAIN_OBJS := $(addprefix $(B)/obj/run-pic/,run/main.o run/options.o vmm/core/util.o)
# The test suite: test_run drives a small program (run_target) under ramfold-run.
RUN_TARGET := $(B)/tests/run/run_target
RUN_TESTS := $(B)/tests/run/test_run

all: $(RUN) $(RUN_PRELOAD)
TEST_PROGRAMS += $(RUN) $(RUN_PRELOAD)

-include $(RUN_PRELOAD_OBJS:.o=.d) $(RUN_MAIN_OBJS:.o=.d)

$(B)/obj/run-pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(RUN_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# Only the interposers are exported (-fvisibility=hidden, EXPORT in
# preload.c). libramfold.so is found next to the preload (build tree) or one
# level up (installed in $(LIBDIR)/ramfold/).
$(RUN_PRELOAD): RUN_CFLAGS += -fvisibility=hidden
$(RUN_PRELOAD): $(RUN_PRELOAD_OBJS) $(B)/libramfold.so
	$(CC) $(CFLAGS) -shared -pthread -o $@ $(RUN_PRELOAD_OBJS) -L$(B) -lramfold \
		-Wl,-rpath,'$$ORIGIN:$$ORIGIN/..' -Wl,--no-undefined -ldl -lm

$(RUN): $(RUN_MAIN_OBJS) $(B)/libramfold.a
	$(CC) $(CFLAGS) -pthread -o $@ $(RUN_MAIN_OBJS) $(B)/libramfold.a $(LIB_DEPS)

# The program under test knows nothing of ramfold: libc only.
$(RUN_TARGET): tests/run/run_target.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -pthread -o $@ $<
$(RUN_TESTS): $(RUN_TARGET) $(RUN) $(RUN_PRELOAD)

.PHONY: run-test
run-test: all $(RUN_TESTS) $(RUN_TARGET)
	@RF_RUN_BIN=$(abspath $(RUN)) RF_RUN_TARGET=$(abspath $(RUN_TARGET)) \
		scripts/run-tests.sh run $(RUN_TESTS)

.PHONY: install-run
install: install-run
install-run: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR)/ramfold
	install -m 755 $(RUN) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(RUN_PRELOAD) $(DESTDIR)$(LIBDIR)/ramfold/
uninstall: uninstall-run
uninstall-run:
	rm -f $(DESTDIR)$(PREFIX)/bin/ramfold-run
	rm -rf $(DESTDIR)$(LIBDIR)/ramfold
