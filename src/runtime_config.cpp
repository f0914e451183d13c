// The process-wide RuntimeConfig.
#include "framecache/runtime_config.h"

namespace framecache {

RuntimeConfig& runtime_config() {
  static RuntimeConfig config;
  return config;
}

}  // namespace framecache
