# The overcommit experiment (issues 7, 17, 18): `make experiment` runs the
# default scenario in the demo VMM, unconstrained, with ramfold's reclaim, and
# with the kernel's own stack instead, three rounds of the three, and leaves
# CSV, SVG plots and a summary table (medians and ranges) under
# build/experiment/. SCENARIO=file and EXPERIMENT_SECONDS=N
# override. `make experiment-restore` puts back what a runner killed outright
# left changed on the host (its journal, build/experiment/host.journal).
OVERCOMMIT_RUN := $(B)/bench/overcommit-run
SCENARIO ?= scenarios/overcommit-default.txt
EXPERIMENT_SECONDS ?=
# Before each run, wait up to this many seconds for the load average to fall
# below 0.9 (the previous run's guests load the host for a while); 0: no wait.
EXPERIMENT_QUIET_WAIT ?= 180
# Rounds of the scenario's runs, interleaved (unconstrained, ramfold, kernel
# stack, then again): the table gives the median and range of each figure.
EXPERIMENT_ROUNDS ?= 3

$(OVERCOMMIT_RUN): bench/overcommit.c bench/overcommit_work.c bench/overcommit_plot.c bench/overcommit.h \
		bench/overcommit_rounds.c bench/kernel_stack.c bench/kernel_stack.h bench/host.c bench/host.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $< bench/overcommit_work.c bench/overcommit_plot.c \
		bench/overcommit_rounds.c bench/kernel_stack.c bench/host.c -lm

# The rounds table's unit test (medians, the comparison line, the noisy
# rule) links the table's code beside the test helpers, as the density
# search's does.
ROUNDS_TEST_DEPS := tests/unit/test_overcommit_rounds.c bench/overcommit_rounds.c \
	bench/overcommit.h $(HELPER_SRCS)
$(B)/tests/unit/test_overcommit_rounds: $(ROUNDS_TEST_DEPS) $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -Ibench $(CFLAGS) -o $@ $< bench/overcommit_rounds.c $(HELPER_SRCS) \
		$(B)/libramfold.a $(LIB_DEPS) $(TEST_LIBS)
$(B)/asan/tests/unit/test_overcommit_rounds: $(ROUNDS_TEST_DEPS) $(B)/asan/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -Ibench $(ASAN_FLAGS) -o $@ $< bench/overcommit_rounds.c $(HELPER_SRCS) \
		$(B)/asan/libramfold.a $(LIB_DEPS) $(TEST_LIBS)

all: $(OVERCOMMIT_RUN)

.PHONY: experiment experiment-short experiment-restore
experiment: all $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment \
		--quiet-wait $(EXPERIMENT_QUIET_WAIT) --rounds $(EXPERIMENT_ROUNDS) \
		$(if $(EXPERIMENT_SECONDS),--duration $(EXPERIMENT_SECONDS)) $(SCENARIO)

experiment-short: all $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment-short \
		scenarios/overcommit-short.txt

# Stall-driven proactive reclaim (issue 18): scenarios/overcommit-proactive.txt,
# then the check of what it reclaimed beyond dedup (bench/proactive_report.c).
PROACTIVE_REPORT := $(B)/bench/proactive-report
$(PROACTIVE_REPORT): bench/proactive_report.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $<

all: $(PROACTIVE_REPORT)

.PHONY: experiment-proactive
experiment-proactive: all $(OVERCOMMIT_RUN) $(PROACTIVE_REPORT)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment-proactive \
		--quiet-wait $(EXPERIMENT_QUIET_WAIT) \
		scenarios/overcommit-proactive.txt; \
	$(PROACTIVE_REPORT) $(B)/experiment-proactive \
		$$(awk '$$1 == "settle" { s = $$2 } $$1 == "duration" { d = $$2 } \
			END { print s, d }' scenarios/overcommit-proactive.txt) \
		| tee $(B)/experiment-proactive/proactive.txt

experiment-restore: $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --out $(B)/experiment --restore
	$(OVERCOMMIT_RUN) --out $(B)/experiment-short --restore
	$(OVERCOMMIT_RUN) --out $(B)/density --restore
	$(OVERCOMMIT_RUN) --out $(B)/density-smoke --restore

# The density search (issue 18, "Density"): `make experiment-density` finds,
# for the default scenario's guest mix on its budget, the largest number of
# guests that all keep 90% of their unconstrained work, under ramfold and
# under the kernel's stack, with short trials of overcommit-run
# (bench/density.c; docs/overcommit.md, "Density"). DENSITY_ARGS adds
# options (--settle, --measure, --max, --retries, --quiet-wait, ...).
# `make experiment-density-smoke` runs it with tiny guests in about 2 minutes.
DENSITY_RUN := $(B)/bench/density-run
DENSITY_ARGS ?=

$(DENSITY_RUN): bench/density.c bench/density_search.c bench/density_search.h bench/density_plot.c \
		bench/density_plot.h bench/overcommit_plot.c bench/overcommit.h bench/host.c bench/host.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $< bench/density_search.c \
		bench/density_plot.c bench/overcommit_plot.c bench/host.c -lm

all: $(DENSITY_RUN)

# The search's unit test links the pure search beside the test helpers, in
# the unit suite and in its ASan build alike.
DENSITY_TEST_DEPS := tests/unit/test_density_search.c bench/density_search.c \
	bench/density_search.h $(HELPER_SRCS)
$(B)/tests/unit/test_density_search: $(DENSITY_TEST_DEPS) $(B)/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -Ibench $(CFLAGS) -o $@ $< bench/density_search.c $(HELPER_SRCS) \
		$(B)/libramfold.a $(LIB_DEPS) $(TEST_LIBS)
$(B)/asan/tests/unit/test_density_search: $(DENSITY_TEST_DEPS) $(B)/asan/libramfold.a
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -Ibench $(ASAN_FLAGS) -o $@ $< bench/density_search.c $(HELPER_SRCS) \
		$(B)/asan/libramfold.a $(LIB_DEPS) $(TEST_LIBS)

.PHONY: experiment-density experiment-density-smoke
experiment-density: all $(OVERCOMMIT_RUN) $(DENSITY_RUN)
	$(DENSITY_RUN) --vmm $(B)/ramfold-vmm --runner $(OVERCOMMIT_RUN) --out $(B)/density \
		--csv $(B)/bench/density.csv $(DENSITY_ARGS) $(SCENARIO)

experiment-density-smoke: all $(OVERCOMMIT_RUN) $(DENSITY_RUN)
	$(DENSITY_RUN) --smoke --vmm $(B)/ramfold-vmm --runner $(OVERCOMMIT_RUN) \
		--out $(B)/density-smoke --csv $(B)/bench/density-smoke.csv $(DENSITY_ARGS) $(SCENARIO)
