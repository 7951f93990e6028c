# libFuzzer target for ramfoldd's core: hostile clients of the broker
# (issue 16: tests/fuzz/fuzz_broker.c says what an input is).
#   make fuzz-broker        10^6 executions (FUZZ_BROKER_RUNS): prints executions
#                           and crashes; findings in $(B)/fuzz/broker-artifacts/
#   make fuzz-smoke-broker  brief run over the committed seed corpus (part of `make test`)
.PHONY: fuzz-broker fuzz-smoke-broker
fuzz: fuzz-broker
fuzz-smoke: fuzz-smoke-broker

FUZZ_BROKER_RUNS ?= 1000000
FUZZ_BROKER_SRCS := tests/fuzz/fuzz_broker.c ramfoldd/broker.c ramfoldd/cand.c ramfoldd/conf.c

$(B)/fuzz/fuzz_broker: $(FUZZ_BROKER_SRCS) ramfoldd/broker.h ramfoldd/cand.h ksm/mix.h ksm/broker_proto.h
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(WARN) -iquote ksm -iquote ramfoldd $(FUZZ_SAN) \
		-fsanitize=fuzzer -o $@ $(FUZZ_BROKER_SRCS) -lxxhash -lnuma

# A corpus copy under build/ takes the new inputs; the committed seeds stay as they are.
fuzz-broker: deps $(B)/fuzz/fuzz_broker
	@mkdir -p $(B)/fuzz/broker-corpus $(B)/fuzz/broker-artifacts
	@echo "fuzz-broker: $(FUZZ_BROKER_RUNS) executions on 1 core"
	@ASAN_OPTIONS=detect_leaks=1 $(B)/fuzz/fuzz_broker -runs=$(FUZZ_BROKER_RUNS) \
		-artifact_prefix=$(B)/fuzz/broker-artifacts/ -print_final_stats=1 \
		$(B)/fuzz/broker-corpus tests/fuzz/corpus/broker > $(B)/fuzz/broker.log 2>&1; \
	rc=$$?; \
	execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(B)/fuzz/broker.log); \
	crashes=$$(ls $(B)/fuzz/broker-artifacts | wc -l); \
	echo "fuzz-broker: $${execs:-0} executions, $$crashes crashes (exit $$rc; log $(B)/fuzz/broker.log)"; \
	[ $$rc -eq 0 ] && [ $$crashes -eq 0 ]

fuzz-smoke-broker: deps $(B)/fuzz/fuzz_broker
	@rm -rf $(B)/fuzz/broker-smoke; mkdir -p $(B)/fuzz/broker-smoke
	@ASAN_OPTIONS=detect_leaks=1 timeout -k 5 120 $(B)/fuzz/fuzz_broker -runs=20000 -seed=1 \
		-max_total_time=30 -artifact_prefix=$(B)/fuzz/broker-smoke/crash- \
		$(B)/fuzz/broker-smoke tests/fuzz/corpus/broker > $(B)/fuzz/broker-smoke.log 2>&1; \
	if [ $$? -eq 0 ]; then p=1 f=0; else p=0 f=1; fi; \
	echo "fuzz-broker: $$(ls tests/fuzz/corpus/broker | wc -l) seeds, 20000 runs; log $(B)/fuzz/broker-smoke.log"; \
	scripts/report-result.sh fuzz $$p $$f
