// Words for an exception a guard saw, for check_verbose() reasons.
#pragma once

#include <string>

namespace framecache::guards {

// Describes the exception currently set, as "TypeError: message", and
// disposes of it like consume_check_error(): an ordinary Exception is cleared,
// a fatal one (KeyboardInterrupt, SystemExit) is left set for the root to
// propagate. Returns "" when no exception is set. Never raises.
std::string take_check_error_text();

}  // namespace framecache::guards
