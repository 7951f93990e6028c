# Swap benchmarks (issue 6).
#   bench-swap       fault latency (compressed tier, file, O_DIRECT), swap-out
#                    throughput, first-touch cost with and without registration
#                    (128 MiB per case), then the hotcold guest with and without a cap
#   bench-swap-long  the in-process part over 512 MiB per case
.PHONY: bench-swap bench-swap-long
bench: bench-swap

# swap_fault calls the swap pager's rf_swap_pager_swap_out (swap/swap_pager.h).
$(B)/bench/swap_fault: bench/swap_fault.c $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Iswap $(CFLAGS) -o $@ $< $(B)/libramfold.a $(LIB_DEPS)

$(B)/bench/swap_hotcold: bench/swap_hotcold.c tests/helpers/vmm_proc.c
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< tests/helpers/vmm_proc.c

bench-swap: all $(B)/bench/swap_fault $(B)/bench/swap_hotcold $(TEST_PROGRAMS)
	@$(B)/bench/swap_fault
	@$(B)/bench/swap_hotcold

bench-swap-long: all $(B)/bench/swap_fault
	@$(B)/bench/swap_fault long
