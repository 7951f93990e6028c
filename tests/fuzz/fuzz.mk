# Fuzz targets arrive with the balloon (issue 5).
.PHONY: fuzz fuzz-smoke
fuzz: all
	@echo "make fuzz: no fuzz target yet (issue 5)"
fuzz-smoke:
	@true
