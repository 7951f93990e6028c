/* SPDX-License-Identifier: MIT */
/*
 * ramfold version: the one place the version is set. The Makefile reads these
 * three numbers for the SONAME (libramfold.so.MAJOR) and the pkg-config file.
 */
#ifndef RAMFOLD_VERSION_H
#define RAMFOLD_VERSION_H

#define RF_VERSION_MAJOR 0
#define RF_VERSION_MINOR 4
#define RF_VERSION_PATCH 0

/* A literal (not pasted from the numbers above) so that bindgen sees it;
 * tests/abi/check-bindgen.sh checks that the two agree. */
#define RF_VERSION_STRING "0.4.0"

/* The library's version string at run time (may differ from the header's). */
const char *rf_version(void);

#endif
