// framecache._C: the compiled core (the hook, cache entries, guard trees).
#include "framecache/bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "framecache's compiled core: the PEP 523 hook, per-code caches and guard trees";
  framecache::bind_runtime(m);
  auto guards = m.def_submodule("guards", "Guard trees compiled in C++");
  auto cls = framecache::bind_guard_tree(guards);
  framecache::bind_leaf_guards_identity(cls);
  framecache::bind_leaf_guards_value(cls);
}
