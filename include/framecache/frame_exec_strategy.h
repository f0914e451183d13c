// What the hook does with a frame (cur_action) and with the frames it calls
// (recursive_action).
#pragma once

#include <algorithm>

namespace framecache {

// Ordered from least to most restrictive: a caller's recursive action caps
// what its callees may do, and the stronger of two actions wins.
enum class FrameAction : int {
  DEFAULT = 0,   // look up; on a miss call the callback
  RUN_ONLY = 1,  // look up; on a miss run the frame normally
  SKIP = 2,      // run normally, no lookup
};

inline FrameAction strongest(FrameAction a, FrameAction b) { return std::max(a, b); }
const char* frame_action_name(FrameAction a);

struct FrameExecStrategy {
  FrameAction cur_action = FrameAction::DEFAULT;
  FrameAction recursive_action = FrameAction::DEFAULT;
  bool operator==(const FrameExecStrategy& o) const {
    return cur_action == o.cur_action && recursive_action == o.recursive_action;
  }
};

}  // namespace framecache
