/* SPDX-License-Identifier: MIT */
/*
 * ramfold version: the one place the version is set. The Makefile reads these
 * three numbers for the SONAME (libramfold.so.MAJOR) and the pkg-config file.
 */
#ifndef RAMFOLD_VERSION_H
#define RAMFOLD_VERSION_H

#define RF_VERSION_MAJOR 0
#define RF_VERSION_MINOR 2
#define RF_VERSION_PATCH 0

#define RF_STR_(x) #x
#define RF_STR(x)  RF_STR_(x)
#define RF_VERSION_STRING                                                                          \
	RF_STR(RF_VERSION_MAJOR) "." RF_STR(RF_VERSION_MINOR) "." RF_STR(RF_VERSION_PATCH)

/* The library's version string at run time (may differ from the header's). */
const char *rf_version(void);

#endif
