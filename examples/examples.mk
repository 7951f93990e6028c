# examples/: the embedder docs/embedding.md walks through, built against an
# installed copy of the library through pkg-config, as a VMM would build it.
# Included from the top Makefile.

# The seccomp test (tests/kvm/test_seccomp.c) installs its allowlist with
# libseccomp; the generic test rule does not link it.
$(B)/tests/kvm/test_seccomp: TEST_LIBS += -lseccomp

# The example embedder: installed copy, pkg-config, run without capabilities
# (examples/run-example.sh). `make test` runs it as the suite "examples".
.PHONY: examples-test
examples-test: lib
	@examples/run-example.sh
