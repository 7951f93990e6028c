# Balloon benchmarks (issue 5).
#   bench-balloon       host-side cost per page of inflate/deflate buffers (1 GiB),
#                       then inflate and deflate of 1 GiB end to end with the guest
#   bench-balloon-long  the host-side part over 4 GiB
.PHONY: bench-balloon bench-balloon-long
bench: bench-balloon

BENCH_BALLOON_HELPERS := tests/helpers/virtq_mock.c tests/helpers/vmm_proc.c

$(B)/bench/balloon_discard: bench/balloon_discard.c $(BENCH_BALLOON_HELPERS) $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_BALLOON_HELPERS) \
		$(B)/libramfold.a $(LIB_DEPS)

$(B)/bench/balloon_e2e: bench/balloon_e2e.c $(BENCH_BALLOON_HELPERS)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_BALLOON_HELPERS) \
		$(B)/libramfold.a $(LIB_DEPS)

bench-balloon: all $(B)/bench/balloon_discard $(B)/bench/balloon_e2e $(TEST_PROGRAMS)
	@$(B)/bench/balloon_discard
	@$(B)/bench/balloon_e2e

bench-balloon-long: all $(B)/bench/balloon_discard
	@$(B)/bench/balloon_discard long
