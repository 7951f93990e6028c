# The overcommit experiment (issue 7): `make experiment` runs the default
# scenario in the demo VMM, once with ramfold's reclaim and once with the
# kernel's KSM instead, and leaves CSV, SVG plots and a summary table under
# build/experiment/. SCENARIO=file and EXPERIMENT_SECONDS=N override.
OVERCOMMIT_RUN := $(B)/bench/overcommit-run
SCENARIO ?= scenarios/overcommit-default.txt
EXPERIMENT_SECONDS ?=

$(OVERCOMMIT_RUN): bench/overcommit.c bench/host.c bench/host.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $< bench/host.c -lm

all: $(OVERCOMMIT_RUN)

.PHONY: experiment experiment-short
experiment: all $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment \
		$(if $(EXPERIMENT_SECONDS),--duration $(EXPERIMENT_SECONDS)) $(SCENARIO)

experiment-short: all $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment-short \
		scenarios/overcommit-short.txt
