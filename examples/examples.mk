# examples/: the embedder docs/embedding.md walks through, built against an
# installed copy of the library through pkg-config, as a VMM would build it.
# Included from the top Makefile.

# The example embedder: installed copy, pkg-config, run without capabilities
# (examples/run-example.sh). `make test` runs it as the suite "examples".
.PHONY: examples-test
examples-test: lib
	@examples/run-example.sh
