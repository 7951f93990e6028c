# bench/dedup: ramfold's dedup engine vs the kernel's KSM (default and fastest)
# on the same 1 GiB in-process content. Table on stdout; CSV and SVG under
# $(B)/bench/. `make bench-dedup-long` lets KSM's default settings run to the end.
BENCH_DEDUP := $(B)/bench/dedup

.PHONY: bench-dedup bench-dedup-long
bench: bench-dedup

# vmm/core/util.c: the scanner's nice (scan_thread_set_nice), as ramfold-vmm sets it.
$(BENCH_DEDUP): bench/dedup.c $(BENCH_REPORT) $(BENCH_REPORT_H) tests/helpers/dedup_util.c \
		tests/helpers/dedup_util.h vmm/core/util.c vmm/core/util.h $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -iquote vmm $(CFLAGS) -o $@ $< $(BENCH_REPORT) \
		tests/helpers/dedup_util.c vmm/core/util.c $(B)/libramfold.a $(LIB_DEPS)

bench-dedup: all $(BENCH_DEDUP)
	$(BENCH_DEDUP) --out $(B)/bench

bench-dedup-long: all $(BENCH_DEDUP)
	$(BENCH_DEDUP) --out $(B)/bench --ksm-default-timeout 300

# The same comparison on guests: the demo VMM with 4 osimage guests of 256 MiB,
# three interleaved rounds (about 2 minutes, so not part of `make bench`);
# BENCH_DEDUP_VMM_ARGS="--rounds 1" for a quick look.
BENCH_DEDUP_VMM := $(B)/bench/dedup_vmm
BENCH_DEDUP_VMM_ARGS ?=
.PHONY: bench-dedup-vmm

$(BENCH_DEDUP_VMM): bench/dedup_vmm.c $(BENCH_REPORT) $(BENCH_REPORT_H) \
		tests/helpers/dedup_util.c tests/helpers/dedup_util.h $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_REPORT) tests/helpers/dedup_util.c \
		$(B)/libramfold.a $(LIB_DEPS)

bench-dedup-vmm: all $(BENCH_DEDUP_VMM)
	B=$(B) $(BENCH_DEDUP_VMM) --out $(B)/bench $(BENCH_DEDUP_VMM_ARGS)

# One domain across processes (issue 16): four ramfold-vmm sharing through a
# private ramfoldd against one ramfold-vmm with the four guests; three
# interleaved rounds (about 6 minutes, so not part of `make bench`).
BENCH_DEDUP_PROCS := $(B)/bench/dedup_procs
.PHONY: bench-dedup-procs

$(BENCH_DEDUP_PROCS): bench/dedup_procs.c $(BENCH_REPORT) $(BENCH_REPORT_H) \
		tests/helpers/dedup_util.c tests/helpers/dedup_util.h tests/helpers/broker_proc.c \
		$(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_REPORT) tests/helpers/dedup_util.c \
		tests/helpers/broker_proc.c $(B)/libramfold.a $(LIB_DEPS)

bench-dedup-procs: all $(BENCH_DEDUP_PROCS)
	B=$(B) $(BENCH_DEDUP_PROCS) --out $(B)/bench $(BENCH_DEDUP_PROCS_ARGS)
