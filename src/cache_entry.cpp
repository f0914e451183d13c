// CacheEntry: checking an entry's guards and running its code for a frame.
#include "framecache/cache_entry.h"

#include <pybind11/pybind11.h>

#include <unordered_set>
#include <utility>
#include <vector>

#include "framecache/cpython.h"
#include "framecache/frame_locals.h"
#include "framecache/guards/root_guard_manager.h"
#include "framecache/thread_state.h"

namespace py = pybind11;

namespace framecache {

namespace {
constexpr int kArgFlags = CO_VARARGS | CO_VARKEYWORDS;

// Entries holding a cached function (see cache_entry_drop_cached_functions).
// Never freed: entries can die during finalization, after static destructors.
std::unordered_set<CacheEntry*>& entries_with_function() {
  static auto* set = new std::unordered_set<CacheEntry*>();
  return *set;
}

std::string code_label(PyCodeObject* co) {
  const char* name = PyUnicode_AsUTF8(cpy::code_qualname(co));
  if (name == nullptr) {
    PyErr_Clear();
    return "<code>";
  }
  return name;
}
}  // namespace

bool check_code_compatible(PyCodeObject* original, PyObject* code_obj) {
  if (!PyCode_Check(code_obj)) {
    PyErr_Format(PyExc_TypeError, "GuardedCode.code must be a code object, got %.200s",
                 Py_TYPE(code_obj)->tp_name);
    return false;
  }
  auto* code = reinterpret_cast<PyCodeObject*>(code_obj);
  const bool orig_fn = (original->co_flags & CO_OPTIMIZED) != 0;
  const bool new_fn = (code->co_flags & CO_OPTIMIZED) != 0;
  const std::string label = code_label(original);
  if (orig_fn != new_fn) {
    PyErr_Format(PyExc_ValueError,
                 "compiled code for %s must be a %s code object like the original", label.c_str(),
                 orig_fn ? "function" : "module or class-body");
    return false;
  }
  if (code->co_argcount != original->co_argcount ||
      code->co_posonlyargcount != original->co_posonlyargcount ||
      code->co_kwonlyargcount != original->co_kwonlyargcount ||
      (code->co_flags & kArgFlags) != (original->co_flags & kArgFlags)) {
    PyErr_Format(PyExc_ValueError,
                 "compiled code for %s must keep the original's arguments: expected "
                 "%d positional (%d positional-only), %d keyword-only, *args=%d, **kwargs=%d; got "
                 "%d (%d), %d, %d, %d",
                 label.c_str(), original->co_argcount, original->co_posonlyargcount,
                 original->co_kwonlyargcount, (original->co_flags & CO_VARARGS) != 0,
                 (original->co_flags & CO_VARKEYWORDS) != 0, code->co_argcount,
                 code->co_posonlyargcount, code->co_kwonlyargcount,
                 (code->co_flags & CO_VARARGS) != 0, (code->co_flags & CO_VARKEYWORDS) != 0);
    return false;
  }
  // Keyword-only arguments are passed by name.
  for (int i = original->co_argcount; i < original->co_argcount + original->co_kwonlyargcount; ++i) {
    const int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(original->co_localsplusnames, i),
                                            PyTuple_GET_ITEM(code->co_localsplusnames, i), Py_EQ);
    if (eq < 0) return false;
    if (eq == 0) {
      PyErr_Format(PyExc_ValueError,
                   "compiled code for %s must keep the keyword-only argument names", label.c_str());
      return false;
    }
  }
  if (code->co_nfreevars != original->co_nfreevars) {
    PyErr_Format(PyExc_ValueError,
                 "compiled code for %s must have the original's %d free variables, got %d",
                 label.c_str(), original->co_nfreevars, code->co_nfreevars);
    return false;
  }
  return true;
}

namespace {
// The fast-local index of `name` in `code`: a plain local, neither an argument
// nor a cell or free variable. Throws py::value_error otherwise.
int32_t plain_local_index(PyCodeObject* code, const std::string& name) {
  int nargs = code->co_argcount + code->co_kwonlyargcount;
  if (code->co_flags & CO_VARARGS) ++nargs;
  if (code->co_flags & CO_VARKEYWORDS) ++nargs;
  PyObject* names = code->co_localsplusnames;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); ++i) {
    const char* n = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
    if (n == nullptr) throw py::error_already_set();
    if (name != n) continue;
    if (i < nargs || cpy::code_slot_is_cell(code, static_cast<int>(i)) ||
        cpy::code_slot_is_free(code, static_cast<int>(i))) {
      throw py::value_error("export local '" + name +
                            "' must be a plain local of the compiled code, not an argument, "
                            "cell or free variable");
    }
    return static_cast<int32_t>(i);
  }
  throw py::value_error("export local '" + name + "' is not a local of the compiled code");
}
}  // namespace

CacheEntry::CacheEntry(PyCodeObject* original, PyObject* code, PyObject* guard_manager,
                       PyObject* compile_id, std::string trace_annotation, uint64_t tag,
                       const std::vector<std::string>& export_locals)
    : code_(Ref::borrow(code)),
      guard_manager_(Ref::borrow(guard_manager)),
      compile_id_(Ref::borrow(compile_id)),
      trace_annotation_(std::move(trace_annotation)),
      tag_(tag) {
  py::handle gm(guard_manager);
  if (py::isinstance<guards::RootGuardManager>(gm)) {
    root_ = gm.cast<guards::RootGuardManager*>();
    refresh_slots(original);
  } else {
    check_method_ = Ref::steal(PyObject_GetAttrString(guard_manager, "check"));
    if (!check_method_) throw py::error_already_set();
  }
  if (export_locals.empty()) return;
  if (!(original->co_flags & CO_OPTIMIZED)) {
    throw py::value_error("export locals need a function's code, not a module or class body");
  }
  const size_t exports = root_ != nullptr ? root_->num_exports() : 0;
  if (export_locals.size() != exports + 1) {
    throw py::value_error("export_locals names a flag and one local per export: expected " +
                          std::to_string(exports + 1) + " names, got " +
                          std::to_string(export_locals.size()));
  }
  auto* c = reinterpret_cast<PyCodeObject*>(code);
  std::vector<int32_t> index;
  for (const std::string& name : export_locals) {
    const int32_t i = plain_local_index(c, name);
    for (int32_t j : index) {
      if (j == i) throw py::value_error("export local '" + name + "' is named twice");
    }
    index.push_back(i);
  }
  export_flag_ = index.front();
  export_index_.assign(index.begin() + 1, index.end());
}

CacheEntry::~CacheEntry() { entries_with_function().erase(this); }

void CacheEntry::record_identity(cpy::Frame* frame, const std::vector<std::string>& names) {
  const std::vector<int32_t> slots = compute_slot_map(cpy::frame_code(frame), names);
  for (int32_t slot : slots) {
    PyObject* value = frame_local_value(frame, slot);  // borrowed
    if (value != nullptr) identity_.emplace_back(slot, guards::ObjectIdentity(value));
  }
}

bool CacheEntry::same_identity(cpy::Frame* frame) const {
  for (const auto& [slot, object] : identity_) {
    if (!object.is(frame_local_value(frame, slot))) return false;
  }
  return true;
}

bool CacheEntry::identity_lost() const {
  for (const auto& [slot, object] : identity_) {
    if (object.get() == nullptr) return true;
  }
  return false;
}

void CacheEntry::refresh_slots(PyCodeObject* original) {
  slots_ = compute_slot_map(original, root_->local_names());
  slots_version_ = root_->local_names_version();
}

int CacheEntry::check(cpy::Frame* frame, uint64_t* export_ticket) {
  if (export_ticket != nullptr) *export_ticket = 0;
  if (root_ != nullptr) {
    if (slots_version_ != root_->local_names_version()) refresh_slots(cpy::frame_code(frame));
    const int passed = root_->check_root(frame_inputs(frame, slots_));
    if (passed == 1 && export_ticket != nullptr && export_flag_ >= 0) {
      *export_ticket = root_->export_ticket();
    }
    return passed;
  }
  // Building the dict runs Python for a module or class body whose namespace
  // is not a dict (its keys(), its __getitem__): an ordinary error there fails
  // the guards like any other error while checking.
  Ref locals = frame_locals_dict(frame);
  if (!locals) return guards::consume_check_error() ? -1 : 0;
  Ref result = Ref::steal(PyObject_CallOneArg(check_method_.get(), locals.get()));
  if (!result) return guards::consume_check_error() ? -1 : 0;
  const int truth = PyObject_IsTrue(result.get());
  if (truth < 0) return guards::consume_check_error() ? -1 : 0;
  return truth;
}

std::vector<std::string> CacheEntry::failure_reasons(cpy::Frame* frame) {
  if (root_ != nullptr) {
    if (slots_version_ != root_->local_names_version()) refresh_slots(cpy::frame_code(frame));
    auto info = root_->check_root_verbose(frame_inputs(frame, slots_));
    PyErr_Clear();
    return info.failures;
  }
  Ref locals = frame_locals_dict(frame);
  if (locals) {
    Ref verbose = Ref::steal(PyObject_GetAttrString(guard_manager_.get(), "check_verbose"));
    if (verbose) {
      Ref info = Ref::steal(PyObject_CallOneArg(verbose.get(), locals.get()));
      if (info) {
        Ref failures = Ref::steal(PyObject_GetAttrString(info.get(), "failures"));
        if (failures && PyList_Check(failures.get())) {
          std::vector<std::string> out;
          for (Py_ssize_t i = 0; i < PyList_GET_SIZE(failures.get()); ++i) {
            // Reasons are text: str() of each, not repr (no quotes in messages).
            PyObject* item = PyList_GET_ITEM(failures.get(), i);  // borrowed
            Ref text = Ref::steal(PyObject_Str(item));
            const char* utf8 = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
            if (utf8 != nullptr) {
              out.emplace_back(utf8);
            } else {
              PyErr_Clear();
              out.push_back(guards::safe_repr(item, 400));
            }
          }
          PyErr_Clear();
          return out;
        }
      }
    }
  }
  PyErr_Clear();
  return {std::string("guard object ") + Py_TYPE(guard_manager_.get())->tp_name +
          ".check() returned False"};
}

// The cached function and reference cycles.
//
// A hit calls a function object made of the entry's code and the frame's
// globals. Making one costs about as much as the rest of a hit, so an entry
// keeps the last one it made (closure-less codes only). That function holds
// its globals strongly, and the chain code -> co_extra -> ExtraState ->
// CacheEntry -> cached function -> globals -> the original function -> code
// is a cycle the garbage collector cannot see: code objects are not tracked
// and the middle of the chain is C++. A function defined by exec() in a
// namespace of its own would keep that namespace, itself and its entries
// alive forever. So every cached function is also listed here, and the list
// is dropped before each full collection (framecache._runtime registers the
// gc callback): the collection then sees the ordinary namespace/function
// cycle and frees it, and the next hit makes a new function.
void cache_entry_drop_cached_functions() {
  // Move the references out first: dropping one can free a namespace whose
  // destruction frees other entries, which erase themselves from the set.
  std::vector<Ref> doomed;
  for (CacheEntry* entry : entries_with_function()) {
    doomed.push_back(std::move(entry->cached_function_));
  }
  entries_with_function().clear();
}

PyObject* CacheEntry::function_for(cpy::Frame* frame) {
  PyFunctionObject* original = cpy::frame_function(frame);
  PyObject* globals = cpy::frame_globals(frame);
  PyObject* closure = original ? original->func_closure : nullptr;
  if (closure == nullptr && cached_function_ &&
      reinterpret_cast<PyFunctionObject*>(cached_function_.get())->func_globals == globals) {
    return Ref(cached_function_).release();
  }
  Ref fn = Ref::steal(PyFunction_New(code_.get(), globals));
  if (!fn) return nullptr;
  if (closure != nullptr) {
    if (PyFunction_SetClosure(fn.get(), closure) < 0) return nullptr;
  } else {
    cached_function_ = fn;
    entries_with_function().insert(this);
  }
  return fn.release();
}

void CacheEntry::receive_exports(cpy::Frame* frame, uint64_t export_ticket) {
  if (export_flag_ < 0 || cpy::frame_code(frame) != code()) return;
  PyObject** fast = cpy::frame_fast_locals(frame);
  if (fast[export_flag_] != nullptr) return;  // not a fresh frame: leave it alone
  const bool moved =
      root_ != nullptr && root_->move_exports(export_ticket, fast, export_index_.data());
  fast[export_flag_] = Py_NewRef(moved ? Py_True : Py_None);
}

PyObject* CacheEntry::run(PyThreadState*, cpy::Frame* frame, uint64_t export_ticket) {
  PyCodeObject* original = cpy::frame_code(frame);
  ThreadState* st = thread_state_peek();
  if (!(original->co_flags & CO_OPTIMIZED)) {
    // Module and class bodies run against their namespace mapping.
    PyObject* closure = cpy::frame_closure(frame);
    const BypassScope bypass(st, code(), nullptr, 0);
    return PyEval_EvalCodeEx(code_.get(), cpy::frame_globals(frame),
                             cpy::frame_locals_mapping(frame), nullptr, 0, nullptr, 0, nullptr, 0,
                             nullptr, closure);
  }

  Ref fn = Ref::steal(function_for(frame));
  if (!fn) return nullptr;
  PyObject** fast = cpy::frame_fast_locals(frame);
  const int argc = original->co_argcount;
  const int kwonly = original->co_kwonlyargcount;
  const int flags = original->co_flags;

  // The hook hands the new frame to receive_exports (eval_frame.cpp); an entry
  // with export locals always goes there, to set the flag at least.
  const BypassScope bypass(st, code(), export_flag_ >= 0 ? this : nullptr, export_ticket);
  PyObject* result;
  if (kwonly == 0 && !(flags & kArgFlags)) {
    // The common case: the frame's arguments are already in call order.
    result = PyObject_Vectorcall(fn.get(), fast, static_cast<size_t>(argc), nullptr);
  } else {
    // Positional arguments, then *args spread; keyword-only arguments and
    // **kwargs by name. Names of positional-only parameters may appear in
    // **kwargs: the call binds them back into **kwargs, as the original did.
    int slot = argc + kwonly;
    PyObject* varargs = (flags & CO_VARARGS) ? fast[slot++] : nullptr;
    PyObject* varkw = (flags & CO_VARKEYWORDS) ? fast[slot] : nullptr;
    const Py_ssize_t nvar = varargs ? PyTuple_GET_SIZE(varargs) : 0;
    const Py_ssize_t nkw = kwonly + (varkw ? PyDict_GET_SIZE(varkw) : 0);
    std::vector<PyObject*> args;
    args.reserve(static_cast<size_t>(argc + nvar + nkw));
    for (int i = 0; i < argc; ++i) args.push_back(fast[i]);
    for (Py_ssize_t i = 0; i < nvar; ++i) args.push_back(PyTuple_GET_ITEM(varargs, i));
    Ref kwnames = Ref::steal(nkw ? PyTuple_New(nkw) : nullptr);
    if (nkw && !kwnames) return nullptr;
    Py_ssize_t k = 0;
    for (int i = argc; i < argc + kwonly; ++i, ++k) {
      PyObject* name = PyTuple_GET_ITEM(original->co_localsplusnames, i);
      PyTuple_SET_ITEM(kwnames.get(), k, Py_NewRef(name));
      args.push_back(fast[i]);
    }
    if (varkw) {
      Py_ssize_t pos = 0;
      PyObject *key, *value;
      while (PyDict_Next(varkw, &pos, &key, &value)) {
        PyTuple_SET_ITEM(kwnames.get(), k++, Py_NewRef(key));
        args.push_back(value);
      }
    }
    result = PyObject_Vectorcall(fn.get(), args.data(), static_cast<size_t>(argc + nvar),
                                 kwnames.get());
  }
  // Exports the frame did not take (it never came, or the ticket went stale) are
  // dropped; after a move there is nothing left and no ticket pending.
  if (export_flag_ >= 0 && root_ != nullptr && root_->export_ticket() != 0) {
    root_->release_exports();
  }
  return result;
}

}  // namespace framecache
