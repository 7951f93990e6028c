/* SPDX-License-Identifier: MIT */
/* ramfold: make KVM guest RAM go further. The umbrella header. */
#ifndef RAMFOLD_H
#define RAMFOLD_H

#include "version.h"
#include "engine.h"
#include "vm.h"
#include "balloon.h"
#include "dedup.h"
#include "ledger.h"
#include "policy.h"
#include "swap.h"

#endif
