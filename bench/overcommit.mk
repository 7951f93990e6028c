# The overcommit experiment (issues 7, 18): `make experiment` runs the default
# scenario in the demo VMM, unconstrained, with ramfold's reclaim, and with
# the kernel's own stack instead, and leaves CSV, SVG plots and a summary
# table under build/experiment/. SCENARIO=file and EXPERIMENT_SECONDS=N
# override. `make experiment-restore` puts back what a runner killed outright
# left changed on the host (its journal, build/experiment/host.journal).
OVERCOMMIT_RUN := $(B)/bench/overcommit-run
SCENARIO ?= scenarios/overcommit-default.txt
EXPERIMENT_SECONDS ?=

$(OVERCOMMIT_RUN): bench/overcommit.c bench/overcommit_work.c bench/overcommit_plot.c bench/overcommit.h \
		bench/kernel_stack.c bench/kernel_stack.h bench/host.c bench/host.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $< bench/overcommit_work.c bench/overcommit_plot.c bench/kernel_stack.c bench/host.c -lm

all: $(OVERCOMMIT_RUN)

.PHONY: experiment experiment-short experiment-restore
experiment: all $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --vmm $(B)/ramfold-vmm --out $(B)/experiment \
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
		scenarios/overcommit-proactive.txt; \
	$(PROACTIVE_REPORT) $(B)/experiment-proactive \
		$$(awk '$$1 == "settle" { s = $$2 } $$1 == "duration" { d = $$2 } \
			END { print s, d }' scenarios/overcommit-proactive.txt) \
		| tee $(B)/experiment-proactive/proactive.txt

experiment-restore: $(OVERCOMMIT_RUN)
	$(OVERCOMMIT_RUN) --out $(B)/experiment --restore
	$(OVERCOMMIT_RUN) --out $(B)/experiment-short --restore
