# The demo VMM arrives with issue 3.
.PHONY: demo
demo: all
	@echo "make demo: the demo VMM (issue 3) is not built yet"
