# bench/guest_cost (issue 17, "the guest must not pay for it"): a memcheck
# and a hotcold guest in the demo VMM, dedup off and on interleaved for 3
# rounds; the guests' throughput during the engine's first pass and once it
# has converged, as a share of dedup off over the same seconds
# (docs/dedup.md). Table on stdout; CSV and SVG under $(B)/bench/.
BENCH_GUEST_COST := $(B)/bench/guest_cost
BENCH_GUEST_COST_ARGS ?=
.PHONY: bench-guest-cost
bench: bench-guest-cost

$(BENCH_GUEST_COST): bench/guest_cost.c $(BENCH_REPORT) $(BENCH_REPORT_H)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_REPORT)

bench-guest-cost: all $(BENCH_GUEST_COST)
	B=$(B) $(BENCH_GUEST_COST) --out $(B)/bench $(BENCH_GUEST_COST_ARGS)
