// Process-wide runtime settings: LRU ordering and recompile limits.
#pragma once

#include <cstdint>

namespace framecache {

struct RuntimeConfig {
  // Move a hit entry to the front of its code's list. Off makes lookup order
  // stable, which replayed calls (activation checkpointing) rely on.
  bool lru = true;
  // Entries a code object may compile before it runs RUN_ONLY.
  int64_t recompile_limit = 8;
  // Entries all code objects together may compile before every further miss
  // runs RUN_ONLY.
  int64_t accumulated_recompile_limit = 256;
  // Entries compiled so far across all code (reset() zeroes it).
  int64_t accumulated_compiles = 0;
  // The accumulated limit's warning was given (once per process until reset()).
  bool accumulated_limit_warned = false;
};

// The one instance; only touched with the GIL held.
RuntimeConfig& runtime_config();

}  // namespace framecache
