# bench/qemu (issue 15): ramfold-run against KSM under stock QEMU, guests of
# 256 MiB booted by tests/qemu/lib.sh; three guests side by side and one
# guest, three interleaved rounds (docs/bench-qemu.md). About 20 minutes, so
# not part of `make bench`. Table on stdout; CSV and SVG under $(B)/bench/.
BENCH_QEMU := $(B)/bench/qemu
BENCH_QEMU_ARGS ?=
.PHONY: bench-qemu

$(BENCH_QEMU): bench/qemu.c $(BENCH_REPORT) $(BENCH_REPORT_H) tests/helpers/broker_proc.c
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(CFLAGS) -o $@ $< $(BENCH_REPORT) tests/helpers/broker_proc.c

# tests/qemu/qemu.mk (QEMU_QMP) is read after bench/*.mk: the path is spelt out.
bench-qemu: all qemu-deps linux-guest $(B)/tests/qemu/qmp $(BENCH_QEMU)
	B=$(B) $(BENCH_QEMU) --out $(B)/bench $(BENCH_QEMU_ARGS)
