# tests/abi/: the "abi" suite (tests/abi/run-abi.sh): programs built against
# the frozen 0.2 headers run on this library, and the public constants come
# through bindgen. `make test` runs it. Included from the top Makefile.
.PHONY: abi-test
abi-test: lib
	@B=$(B) tests/abi/run-abi.sh
