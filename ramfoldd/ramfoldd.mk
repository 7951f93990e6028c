# ramfoldd, the host broker (issue 16, docs/broker.md): sharing domains
# across VM processes. A program like run/, not a library layer: its core
# (broker.c, conf.c) has no socket I/O and is linked again into its tests
# and fuzz target; main.c is the transport. It speaks ksm/broker_proto.h and
# reuses the VMM's JSON writer, size parser and control-socket wire
# (vmm/core/json.c, vmm/core/util.c, vmm/ctl/wire.c).
RAMFOLDD := $(B)/ramfoldd
RAMFOLDD_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -iquote ksm -iquote vmm -iquote ramfoldd
RAMFOLDD_CORE := ramfoldd/broker.c ramfoldd/cand.c ramfoldd/conf.c
RAMFOLDD_SRCS := $(RAMFOLDD_CORE) ramfoldd/main.c vmm/core/json.c vmm/core/util.c vmm/ctl/wire.c
RAMFOLDD_OBJS := $(RAMFOLDD_SRCS:%.c=$(B)/obj/ramfoldd/%.o)
RAMFOLDD_LIBS := -lxxhash -lnuma
BROKER_TESTS := $(B)/tests/broker/test_broker $(B)/tests/broker/test_cand
# The library's side: engines in separate processes sharing through a real
# ramfoldd (built by the generic test rule, against libramfold.a).
BROKER_SHARE_TESTS := $(B)/tests/broker/test_share

all: $(RAMFOLDD)
TEST_PROGRAMS += $(RAMFOLDD)

-include $(RAMFOLDD_OBJS:.o=.d)

$(B)/obj/ramfoldd/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(RAMFOLDD_CFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# wire.c names the library's page states and huge-page modes
# (rf_page_state_name, rf_dedup_huge_name), and util.c parses the latter:
# libramfold.a resolves those symbols.
$(RAMFOLDD): $(RAMFOLDD_OBJS) $(B)/libramfold.a
	$(CC) $(CFLAGS) -pthread -o $@ $(RAMFOLDD_OBJS) $(B)/libramfold.a $(LIB_DEPS)

# The tests drive the real daemon over its socket, and the core directly.
$(B)/tests/broker/test_broker: tests/broker/test_broker.c $(RAMFOLDD_CORE) ramfoldd/broker.h ramfoldd/cand.h ksm/mix.h ksm/broker_proto.h $(RAMFOLDD)
	@mkdir -p $(@D)
	$(CC) $(RAMFOLDD_CFLAGS) $(CFLAGS) -o $@ tests/broker/test_broker.c $(RAMFOLDD_CORE) \
		$(RAMFOLDD_LIBS) -lcmocka

$(B)/tests/broker/test_cand: tests/broker/test_cand.c ramfoldd/cand.c ramfoldd/cand.h ksm/mix.h
	@mkdir -p $(@D)
	$(CC) $(RAMFOLDD_CFLAGS) $(CFLAGS) -o $@ tests/broker/test_cand.c ramfoldd/cand.c -lcmocka

.PHONY: broker-test
broker-test: all $(BROKER_TESTS) $(BROKER_SHARE_TESTS)
	@RF_RAMFOLDD=$(abspath $(RAMFOLDD)) scripts/run-tests.sh broker $(BROKER_TESTS) \
		$(BROKER_SHARE_TESTS)

.PHONY: install-ramfoldd uninstall-ramfoldd
install: install-ramfoldd
install-ramfoldd: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 755 $(RAMFOLDD) $(DESTDIR)$(PREFIX)/bin/
	sed 's|@BINDIR@|$(PREFIX)/bin|' dist/ramfoldd.service \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/ramfoldd.service
	install -m 644 dist/ramfoldd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/
uninstall: uninstall-ramfoldd
uninstall-ramfoldd:
	rm -f $(DESTDIR)$(PREFIX)/bin/ramfoldd
	rm -f $(DESTDIR)$(PREFIX)/lib/systemd/system/ramfoldd.service \
		$(DESTDIR)$(PREFIX)/lib/systemd/system/ramfoldd.socket
