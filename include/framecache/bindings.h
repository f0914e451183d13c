// The pieces of the _C module, one per concept; module.cpp calls them in order.
// Each guard family binds its builder methods onto the GuardManager class.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache {

namespace py = pybind11;
using GuardManagerClass = py::class_<guards::GuardManager>;

// The name of obj's type, for the TypeError a builder method raises on a bad argument.
inline std::string type_name(const py::handle& obj) { return Py_TYPE(obj.ptr())->tp_name; }

// FrameAction, FrameExecStrategy, GuardedCode, CallbackResult, FrameView,
// CacheEntry views and the runtime functions.
void bind_runtime(py::module_& m);
// GuardManager, RootGuardManager, GuardDebugInfo, the frame accessors.
GuardManagerClass bind_guard_tree(py::module_& m);
// TYPE_MATCH, ID_MATCH, NONE/TRUE/FALSE_MATCH, NOT_NONE.
void bind_leaf_guards_identity(GuardManagerClass& cls);
// EQUALS_MATCH, FLOAT_IS_NAN.
void bind_leaf_guards_value(GuardManagerClass& cls);
// LENGTH_CHECK, DICT_LENGTH, DICT_CONTAINS, MAPPING_KEYS_MATCH.
void bind_leaf_guards_containers(GuardManagerClass& cls);
// NO_HASATTR.
void bind_leaf_guards_attributes(GuardManagerClass& cls);
// RANGE_ITERATOR_MATCH, TUPLE_ITERATOR_LEN.
void bind_leaf_guards_iterators(GuardManagerClass& cls);
// LAMBDA.
void bind_leaf_guards_lambda(GuardManagerClass& cls);
// OBJECT_ALIASING, NO_TENSOR_ALIASING (methods of the root).
void bind_leaf_guards_relational(GuardManagerClass& cls);

// _call_with_callback(callback, fn, *args, **kwargs).
void bind_call_with_callback(py::module_& m);
// _CaptureProfile: the side-effect monitor's profile function, filtered in C.
void bind_capture_profile(py::module_& m);
// _passthrough_evaluator, _passthrough_evaluator_installed (the benchmarks' floor).
void bind_passthrough_evaluator(py::module_& m);
// root.object_source(obj, label).
void bind_accessors_object(GuardManagerClass& cls);
// attr, generic_attr, type_, obj_dict, type_dict.
void bind_accessors_attr(GuardManagerClass& cls);
// item, dict_item, list_item, tuple_item.
void bind_accessors_items(GuardManagerClass& cls);
// closure_cell, func_defaults, func_kwdefaults, func_code.
void bind_accessors_function(GuardManagerClass& cls);
// weakref_call.
void bind_accessors_weakref(GuardManagerClass& cls);
// TENSOR_MATCH, GLOBAL_STATE, tensor_size/stride/storage_offset, and the torch reader switch.
void bind_leaf_guards_tensor(py::module_& m, GuardManagerClass& cls);
// _set_attr_hook_recogniser, _attr_hook_verdict (attr_hook_model.h).
void bind_attr_hook_model(py::module_& m);

}  // namespace framecache
