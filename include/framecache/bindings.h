// The pieces of the _C module, one per concept; module.cpp calls them in order.
// Each guard family binds its builder methods onto the GuardManager class.
#pragma once

#include <pybind11/pybind11.h>

#include "framecache/guards/guard_manager.h"

namespace framecache {

namespace py = pybind11;
using GuardManagerClass = py::class_<guards::GuardManager>;

// FrameAction, FrameExecStrategy, GuardedCode, CallbackResult, FrameView,
// CacheEntry views and the runtime functions.
void bind_runtime(py::module_& m);
// GuardManager, RootGuardManager, GuardDebugInfo, the frame accessors.
GuardManagerClass bind_guard_tree(py::module_& m);
// TYPE_MATCH, ID_MATCH, NONE/TRUE/FALSE_MATCH, NOT_NONE.
void bind_leaf_guards_identity(GuardManagerClass& cls);
// EQUALS_MATCH.
void bind_leaf_guards_value(GuardManagerClass& cls);

}  // namespace framecache
