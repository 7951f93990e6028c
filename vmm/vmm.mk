# The demo VMM: build/ramfold-vmm, an embedder of libramfold like any other
# (public headers only), with jemalloc as its malloc. `make demo` runs it.
VMM_SRCS := $(sort $(wildcard vmm/*.c))
VMM_OBJS := $(VMM_SRCS:%.c=$(B)/obj/%.o)
VMM := $(B)/ramfold-vmm

all: $(VMM)
TEST_PROGRAMS += $(VMM)

-include $(VMM_OBJS:.o=.d)

# vmm/ sees include/ (public API) only, never src/.
$(B)/obj/vmm/%.o: vmm/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -pthread -Iinclude $(CFLAGS) -MMD -MP -c $< -o $@

$(VMM): $(VMM_OBJS) $(B)/libramfold.a
	$(CC) $(CFLAGS) -pthread -o $@ $(VMM_OBJS) $(B)/libramfold.a $(LIB_DEPS) -lm

# 4 guests of 256 MiB for ~30 s with the live table; CSV and console logs
# under build/demo/. DEMO_SECONDS=10 make demo for a shorter run. Dedup is on:
# the two osimage guests share a sharing domain, the others merge within
# themselves (and zero pages). DEMO_DEDUP=off shows the same guests without it.
DEMO_SECONDS ?= 30
DEMO_DEDUP ?= domains
.PHONY: demo
demo: all
	@mkdir -p $(B)/demo
	$(VMM) --duration $(DEMO_SECONDS) --table --log-dir $(B)/demo \
		--stats-csv $(B)/demo/stats.csv --ctl $(B)/demo/ctl.sock --dedup $(DEMO_DEDUP) \
		--vm name=os0,mem=256M,workload=osimage,mib=160,domain=os \
		--vm name=os1,mem=256M,workload=osimage,mib=160,domain=os \
		--vm name=dup0,mem=256M,workload=dup,mib=192,dup=60,zero=20 \
		--vm name=check0,mem=256M,workload=memcheck,mib=160
	@echo "make demo: console logs and stats.csv in $(B)/demo/"
