// The C-stack guard of the hook: the thread's stack bounds and the margin.
#include "framecache/stack_guard.h"

#include <Python.h>

#include <algorithm>
#include <cstddef>

#ifdef __linux__
#include <pthread.h>
#endif

namespace framecache::stack {

__thread uintptr_t t_limit __attribute__((tls_model("initial-exec"))) = 0;

namespace {
// What must stay free below the last frame the hook accepts: the C frames
// between two Python calls (the evaluator, a C extension's own recursion,
// raising and unwinding the RecursionError). An eighth of the stack, between
// 64 KiB and 1 MiB (1 MiB of the usual 8 MiB).
constexpr size_t kMinMargin = size_t{64} << 10;
constexpr size_t kMaxMargin = size_t{1} << 20;
}  // namespace

uintptr_t compute_limit() noexcept {
  uintptr_t limit = 1;  // unknown: never refuse
#ifdef __linux__
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* base = nullptr;
    size_t size = 0;
    if (pthread_attr_getstack(&attr, &base, &size) == 0 && base != nullptr && size > 0) {
      const size_t margin = std::clamp(size / 8, kMinMargin, kMaxMargin);
      if (size > margin) limit = reinterpret_cast<uintptr_t>(base) + margin;
    }
    pthread_attr_destroy(&attr);
  }
#endif
  t_limit = limit;
  return limit;
}

void raise_exhausted() noexcept {
  PyErr_SetString(PyExc_RecursionError,
                  "maximum recursion depth exceeded: the C stack is nearly exhausted (each Python "
                  "call through framecache's frame evaluator uses C stack; a larger stack, from "
                  "ulimit -s or threading.stack_size, allows deeper recursion)");
}

}  // namespace framecache::stack
