// Accessors on functions: closure cells, __defaults__, __kwdefaults__, __code__.
#include "framecache/guards/accessors_function.h"

namespace framecache::guards {

namespace {

// The function behind `value` (borrowed), or null if there is none.
PyObject* function_of(PyObject* value) {
  if (PyMethod_Check(value)) value = PyMethod_GET_FUNCTION(value);
  else if (PyInstanceMethod_Check(value)) value = PyInstanceMethod_GET_FUNCTION(value);
  return PyFunction_Check(value) ? value : nullptr;
}

std::string not_a_function(PyObject* value) {
  return "expected a function, got " + a_type_name(value);
}

}  // namespace

// --- ClosureCellAccessor ------------------------------------------------------

ClosureCellAccessor::ClosureCellAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                         Py_ssize_t index)
    : GuardAccessor(std::move(key), std::move(child)), index_(index) {}

Ref ClosureCellAccessor::fetch(PyObject* parent, const FrameInputs&) {
  PyObject* f = function_of(parent);
  if (f == nullptr) return Ref();
  PyObject* closure = PyFunction_GET_CLOSURE(f);  // borrowed tuple of cells, or null
  if (closure == nullptr || index_ >= PyTuple_GET_SIZE(closure)) return Ref();
  PyObject* cell = PyTuple_GET_ITEM(closure, index_);
  if (!PyCell_Check(cell)) return Ref();
  return Ref::borrow(PyCell_GET(cell));  // null when the cell is empty
}

std::string ClosureCellAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  PyObject* f = function_of(parent);
  if (f == nullptr) return not_a_function(parent);
  PyObject* closure = PyFunction_GET_CLOSURE(f);
  const Py_ssize_t n = closure == nullptr ? 0 : PyTuple_GET_SIZE(closure);
  if (index_ >= n) {
    return "the function has " + std::to_string(n) + " closure cells, no cell " +
           std::to_string(index_);
  }
  return "closure cell " + std::to_string(index_) + " is empty";
}

std::string ClosureCellAccessor::describe() const {
  return "ClosureCell(" + std::to_string(index_) + ")";
}

// --- FunctionPartAccessor -----------------------------------------------------

FunctionPartAccessor::FunctionPartAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                           Part part)
    : GuardAccessor(std::move(key), std::move(child)), part_(part) {}

Ref FunctionPartAccessor::fetch(PyObject* parent, const FrameInputs&) {
  PyObject* f = function_of(parent);
  if (f == nullptr) return Ref();
  PyObject* part = nullptr;  // borrowed
  switch (part_) {
    case Part::kDefaults: part = PyFunction_GET_DEFAULTS(f); break;
    case Part::kKwDefaults: part = PyFunction_GET_KW_DEFAULTS(f); break;
    case Part::kCode: part = PyFunction_GET_CODE(f); break;
    case Part::kGlobals: part = PyFunction_GET_GLOBALS(f); break;
  }
  return Ref::borrow(part != nullptr ? part : Py_None);
}

std::string FunctionPartAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  return not_a_function(parent);
}

std::string FunctionPartAccessor::describe() const {
  switch (part_) {
    case Part::kDefaults: return "FuncDefaults()";
    case Part::kKwDefaults: return "FuncKwDefaults()";
    case Part::kCode: return "FuncCode()";
    case Part::kGlobals: return "FuncGlobals()";
  }
  return "?";
}

// --- builders -----------------------------------------------------------------

GuardManager& add_closure_cell(GuardManager& node, Py_ssize_t index) {
  const std::string key = "closure_cell:" + std::to_string(index);
  const std::string source =
      node.source() + ".__closure__[" + std::to_string(index) + "].cell_contents";
  return node.get_or_add_accessor(key, source, [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<ClosureCellAccessor>(key, std::move(child), index);
  });
}

namespace {
GuardManager& add_part(GuardManager& node, FunctionPartAccessor::Part part, const char* key,
                       const char* attribute) {
  return node.get_or_add_accessor(key, node.source() + "." + attribute,
                                  [&](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<FunctionPartAccessor>(
                                        key, std::move(child), part);
                                  });
}
}  // namespace

GuardManager& add_func_defaults(GuardManager& node) {
  return add_part(node, FunctionPartAccessor::Part::kDefaults, "func_defaults", "__defaults__");
}

GuardManager& add_func_kwdefaults(GuardManager& node) {
  return add_part(node, FunctionPartAccessor::Part::kKwDefaults, "func_kwdefaults",
                  "__kwdefaults__");
}

GuardManager& add_func_code(GuardManager& node) {
  return add_part(node, FunctionPartAccessor::Part::kCode, "func_code", "__code__");
}

GuardManager& add_func_globals(GuardManager& node) {
  return add_part(node, FunctionPartAccessor::Part::kGlobals, "func_globals", "__globals__");
}

}  // namespace framecache::guards
