# libFuzzer target for the balloon device (issue 5) and its restore from a
# saved image (issue 14: op 12 of fuzz_balloon.c).
#   make fuzz-balloon        long run (FUZZ_TIME seconds, default 180): prints
#                            executions and crashes; findings in build/fuzz/balloon-artifacts/
#   make fuzz-smoke-balloon  brief run over the committed seed corpus (part of `make test`)
.PHONY: fuzz-balloon fuzz-smoke-balloon
fuzz: fuzz-balloon
fuzz-smoke: fuzz-smoke-balloon

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 180
FUZZ_SAN   := -Wno-unknown-warning-option -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer -DRF_ARENA_LIBC
FUZZ_LIBOBJS := $(LIB_SRCS:%.c=$(B)/fuzz/obj/%.o)
# Header dependencies too: an object left stale by a changed struct (an
# engine config field, say) links and then misreads its neighbours' layout.
-include $(FUZZ_LIBOBJS:.o=.d)

$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(LIB_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(B)/fuzz/fuzz_balloon: tests/fuzz/fuzz_balloon.c $(FUZZ_LIBOBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIB_DEPS) -lz

# A corpus copy under build/ takes the new inputs; the committed seeds stay as they are.
fuzz-balloon: deps $(B)/fuzz/fuzz_balloon
	@mkdir -p $(B)/fuzz/balloon-corpus $(B)/fuzz/balloon-artifacts
	@echo "fuzz-balloon: $(FUZZ_TIME) s on 1 core"
	@ASAN_OPTIONS=detect_leaks=1 $(B)/fuzz/fuzz_balloon -max_total_time=$(FUZZ_TIME) \
		-artifact_prefix=$(B)/fuzz/balloon-artifacts/ -print_final_stats=1 \
		$(B)/fuzz/balloon-corpus tests/fuzz/corpus/balloon > $(B)/fuzz/balloon.log 2>&1; \
	rc=$$?; \
	execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(B)/fuzz/balloon.log); \
	crashes=$$(ls $(B)/fuzz/balloon-artifacts | wc -l); \
	echo "fuzz-balloon: $${execs:-0} executions, $$crashes crashes (exit $$rc; log $(B)/fuzz/balloon.log)"; \
	[ $$rc -eq 0 ] && [ $$crashes -eq 0 ]

fuzz-smoke-balloon: deps $(B)/fuzz/fuzz_balloon
	@rm -rf $(B)/fuzz/balloon-smoke; mkdir -p $(B)/fuzz/balloon-smoke
	@ASAN_OPTIONS=detect_leaks=1 timeout -k 5 120 $(B)/fuzz/fuzz_balloon -runs=20000 -seed=1 \
		-max_total_time=30 -artifact_prefix=$(B)/fuzz/balloon-smoke/crash- \
		$(B)/fuzz/balloon-smoke tests/fuzz/corpus/balloon > $(B)/fuzz/balloon-smoke.log 2>&1; \
	if [ $$? -eq 0 ]; then p=1 f=0; else p=0 f=1; fi; \
	echo "fuzz-balloon: $$(ls tests/fuzz/corpus/balloon | wc -l) seeds, 20000 runs; log $(B)/fuzz/balloon-smoke.log"; \
	scripts/report-result.sh fuzz $$p $$f
