// Names of frame actions, for reprs and messages.
#include "framecache/frame_exec_strategy.h"

namespace framecache {

const char* frame_action_name(FrameAction a) {
  switch (a) {
    case FrameAction::DEFAULT: return "DEFAULT";
    case FrameAction::RUN_ONLY: return "RUN_ONLY";
    case FrameAction::SKIP: return "SKIP";
  }
  return "?";
}

}  // namespace framecache
