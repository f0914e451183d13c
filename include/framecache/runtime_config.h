// Process-wide runtime settings: LRU ordering and recompile limits.
#pragma once

#include <cstdint>

namespace framecache {

struct RuntimeConfig {
  // Move a hit entry to the front of its code's list. Off makes lookup order
  // stable, which replayed calls (activation checkpointing) rely on.
  bool lru = true;
  // Entries a frame may find on its code, compiled under the same options tag
  // for the same identity-guarded objects (CacheEntry::same_identity), before
  // a miss runs it without compiling: what dynamo calls the recompile limit.
  int64_t recompile_limit = 8;
  // Entries one code object may accumulate (every tag, every identity) before
  // it runs RUN_ONLY.
  int64_t accumulated_recompile_limit = 256;
  // Entries compiled so far across all code, for information (reset() zeroes
  // it); no limit applies to it.
  int64_t accumulated_compiles = 0;
};

// The one instance; only touched with the GIL held.
RuntimeConfig& runtime_config();

}  // namespace framecache
