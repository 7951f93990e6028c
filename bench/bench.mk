# Benchmarks arrive with issues 4-7.
.PHONY: bench
bench: all
	@echo "make bench: no benchmark is built yet (dedup: issue 4, balloon: 5, swap: 6)"
