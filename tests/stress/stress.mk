# The combined stress test (tests/stress/test_stress.c): page dedup, swap and
# the balloon on the same guest RAM, with racing host writers and a real vCPU,
# and not one write lost. docs/stress.md tells how to read its output.
#   make stress-test   part of `make test`: 10^6 host writes per swap mode
#                      (move, copy), one seed, release build (suite "stress")
#                      and ASan+UBSan build (suite "stress-asan")
#   make stress        the long run: STRESS_WRITES host writes per mode over
#                      STRESS_SEEDS seeds, release build; 10^8 writes in all
#                      by default, about half an hour on two cores
# Each run has a deadline of STRESS_SECONDS (RF_STRESS_SECONDS); a run that
# misses it, or a thread that makes no progress for 20 s, is a stall: every
# thread's stack is dumped and the test aborts.
.PHONY: stress-test stress

STRESS_BIN	   := $(B)/tests/stress/test_stress
STRESS_ASAN	   := $(B)/asan/tests/stress/test_stress
STRESS_TEST_WRITES ?= 1000000
STRESS_WRITES	   ?= 50000000
STRESS_SEEDS	   ?= 10
STRESS_SECONDS	   ?= 600

# Both suites run even if the first fails; outside `make test` the target
# then fails.
stress-test: all $(STRESS_BIN) $(STRESS_ASAN)
	@rc=0; \
	RF_STRESS_WRITES=$(STRESS_TEST_WRITES) scripts/run-tests.sh stress $(STRESS_BIN) || rc=1; \
	RF_STRESS_WRITES=$(STRESS_TEST_WRITES) ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1 \
		scripts/run-tests.sh stress-asan $(STRESS_ASAN) || rc=1; \
	exit $$rc

# The runner's time limit covers every run of both modes with its deadline.
stress: all $(STRESS_BIN)
	@RF_STRESS_WRITES=$(STRESS_WRITES) RF_STRESS_SEEDS=$(STRESS_SEEDS) \
		RF_STRESS_SECONDS=$(STRESS_SECONDS) \
		RF_TEST_TIMEOUT=$$((2 * $(STRESS_SEEDS) * $(STRESS_SECONDS) + 600)) \
		scripts/run-tests.sh stress $(STRESS_BIN)
