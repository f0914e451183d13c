// framecache._C: the compiled core (the hook, cache entries, guard trees).
#include "framecache/bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "framecache's compiled core: the PEP 523 hook, per-code caches and guard trees";
  framecache::bind_runtime(m);
  framecache::bind_call_with_callback(m);
  framecache::bind_capture_profile(m);
  framecache::bind_passthrough_evaluator(m);
  auto guards = m.def_submodule("guards", "Guard trees compiled in C++");
  auto cls = framecache::bind_guard_tree(guards);
  framecache::bind_leaf_guards_identity(cls);
  framecache::bind_leaf_guards_value(cls);
  framecache::bind_leaf_guards_containers(cls);
  framecache::bind_leaf_guards_attributes(cls);
  framecache::bind_leaf_guards_iterators(cls);
  framecache::bind_leaf_guards_lambda(cls);
  framecache::bind_leaf_guards_relational(cls);
  framecache::bind_accessors_object(cls);
  framecache::bind_accessors_attr(cls);
  framecache::bind_accessors_items(cls);
  framecache::bind_accessors_function(cls);
  framecache::bind_accessors_weakref(cls);
  framecache::bind_leaf_guards_tensor(guards, cls);
  framecache::bind_attr_hook_model(guards);
}
