# bench/dedup_thp (issue 17, "Huge pages the way ESX treats them"): in the
# demo VMM, the guests' throughput with thp=off and thp=on, then the saving of
# two dup guests with THP off and on, dedup off, ramfold's engine with no
# policy, in the policy's high state (huge pages kept whole) and in its low
# state (cold ones split), and the kernel's KSM on the same THP-backed RAM.
# One run of each, about 3 minutes: not part of `make bench`. Table on stdout.
BENCH_DEDUP_THP := $(B)/bench/dedup_thp
BENCH_DEDUP_THP_ARGS ?=
.PHONY: bench-dedup-thp

$(BENCH_DEDUP_THP): bench/dedup_thp.c $(BENCH_REPORT) $(BENCH_REPORT_H)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_REPORT)

bench-dedup-thp: all $(BENCH_DEDUP_THP)
	B=$(B) $(BENCH_DEDUP_THP) $(BENCH_DEDUP_THP_ARGS)
