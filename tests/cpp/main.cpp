// The GoogleTest entry point: one embedded interpreter for the whole run, with
// framecache's bindings registered as the embedded module "_fc".
#include <gtest/gtest.h>

#include "framecache/bindings.h"
#include "support.h"

PYBIND11_EMBEDDED_MODULE(_fc, m) {
  framecache::bind_runtime(m);
  auto guards = m.def_submodule("guards", "Guard trees compiled in C++");
  auto cls = framecache::bind_guard_tree(guards);
  framecache::bind_leaf_guards_identity(cls);
  framecache::bind_leaf_guards_value(cls);
}

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer defaults for this executable, also when CMake runs it to list the
// tests (without ctest's environment). CPython and pybind11 keep allocations
// for the life of the process on purpose (interned objects, type records),
// which LeakSanitizer would report at exit: leaks of framecache's own objects
// are checked by the tests instead, through weak references and refcounts.
// (Default visibility: the sanitizer runtime looks these up dynamically.)
extern "C" __attribute__((visibility("default"))) const char* __asan_default_options() {
  return "detect_leaks=0";
}
extern "C" __attribute__((visibility("default"))) const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}
#endif

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  pybind11::scoped_interpreter interpreter;
  framecache::fctest::fc();  // registers the bound types before any test uses them
  return RUN_ALL_TESTS();
}
