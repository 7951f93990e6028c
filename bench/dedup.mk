# bench/dedup: ramfold's dedup engine vs the kernel's KSM (default and fastest)
# on the same 1 GiB in-process content. Table on stdout; CSV and SVG under
# $(B)/bench/. `make bench-dedup-long` lets KSM's default settings run to the end.
BENCH_DEDUP := $(B)/bench/dedup

.PHONY: bench-dedup bench-dedup-long
bench: bench-dedup

$(BENCH_DEDUP): bench/dedup.c $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(B)/libramfold.a $(LIB_DEPS)

bench-dedup: all $(BENCH_DEDUP)
	$(BENCH_DEDUP) --out $(B)/bench

bench-dedup-long: all $(BENCH_DEDUP)
	$(BENCH_DEDUP) --out $(B)/bench --ksm-default-timeout 300
