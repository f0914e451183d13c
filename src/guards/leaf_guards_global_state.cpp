// GLOBAL_STATE: capture torch's ambient state, compare it on every check.
#include "framecache/guards/leaf_guards_global_state.h"

#include "framecache/guards/leaf_guards_tensor.h"
#include "framecache/guards/torch_access.h"

namespace framecache::guards {

struct GlobalStateMatch::Snapshot {
  torch_access::GlobalStateReading reading;
  std::vector<ModeEntry> function_modes;
  std::vector<ModeEntry> dispatch_modes;
};

namespace {

const char* enabled_text(int32_t v) { return v ? "enabled" : "disabled"; }

const char* torch_function_text(int32_t v) {
  switch (v) {
    case kTorchFunctionEnabled: return "enabled";
    case kTorchFunctionSubclassesDisabled: return "disabled for subclasses";
    case kTorchFunctionAllDisabled: return "disabled";
  }
  return "unknown";
}

Ref mode_at(bool function_modes, int64_t i) {
  return function_modes ? torch_access::function_mode_at(i) : torch_access::dispatch_mode_at(i);
}

}  // namespace

bool GlobalStateMatch::read_modes(std::vector<ModeEntry>& out, int64_t count, bool function_modes) {
  PyObject* device_context = torch_access::device_context_type();
  for (int64_t i = 0; i < count; ++i) {
    Ref mode = mode_at(function_modes, i);
    if (!mode) return false;
    ModeEntry e(reinterpret_cast<PyObject*>(Py_TYPE(mode.get())));
    e.type_name = qualified_type_name(Py_TYPE(mode.get()));
    if (function_modes && device_context != nullptr &&
        PyObject_TypeCheck(mode.get(), reinterpret_cast<PyTypeObject*>(device_context))) {
      e.device = Ref::steal(PyObject_GetAttrString(mode.get(), "device"));
      if (!e.device) return false;
    }
    out.push_back(std::move(e));
  }
  return true;
}

bool GlobalStateMatch::read_snapshot(Snapshot& out) {
  if (!torch_access::read_global_state(out.reading)) return false;
  const FcGlobalState& s = out.reading.state;
  return read_modes(out.function_modes, s.function_mode_count, true) &&
         read_modes(out.dispatch_modes, s.dispatch_mode_count, false);
}

std::unique_ptr<GlobalStateMatch> GlobalStateMatch::create() {
  std::unique_ptr<GlobalStateMatch> g(new GlobalStateMatch());
  Snapshot now;
  if (!read_snapshot(now)) return nullptr;
  g->expected_ = now.reading.state;
  g->dtypes_[0] = Ref::borrow(g->expected_.autocast_cpu_dtype);
  g->dtypes_[1] = Ref::borrow(g->expected_.autocast_cuda_dtype);
  g->dtypes_[2] = Ref::borrow(g->expected_.default_dtype);
  g->function_modes_ = std::move(now.function_modes);
  g->dispatch_modes_ = std::move(now.dispatch_modes);
  g->device_attr_ = Ref::steal(PyUnicode_InternFromString("device"));
  if (!g->device_attr_) return nullptr;
  return g;
}

bool GlobalStateMatch::stack_matches(const std::vector<ModeEntry>& expected, bool function_modes) {
  for (size_t i = 0; i < expected.size(); ++i) {
    const ModeEntry& e = expected[i];
    Ref mode = mode_at(function_modes, static_cast<int64_t>(i));
    if (!mode) return false;
    if (!e.type.is(reinterpret_cast<PyObject*>(Py_TYPE(mode.get())))) return false;
    if (e.device) {
      Ref device = Ref::steal(PyObject_GetAttr(mode.get(), device_attr_.get()));
      if (!device) return false;
      if (PyObject_RichCompareBool(device.get(), e.device.get(), Py_EQ) != 1) return false;
    }
  }
  return true;
}

bool GlobalStateMatch::modes_match() {
  return stack_matches(function_modes_, true) && stack_matches(dispatch_modes_, false);
}

bool GlobalStateMatch::check(PyObject*) {
  torch_access::GlobalStateReading reading;
  if (!torch_access::read_global_state(reading)) {
    consume_check_error();
    return false;
  }
  const FcGlobalState& s = reading.state;
  const FcGlobalState& e = expected_;
  if (s.grad_enabled != e.grad_enabled || s.autocast_cpu_enabled != e.autocast_cpu_enabled ||
      s.autocast_cuda_enabled != e.autocast_cuda_enabled ||
      s.autocast_cache_enabled != e.autocast_cache_enabled ||
      s.autocast_cpu_dtype != e.autocast_cpu_dtype ||
      s.autocast_cuda_dtype != e.autocast_cuda_dtype || s.default_dtype != e.default_dtype ||
      s.deterministic_algorithms != e.deterministic_algorithms ||
      s.deterministic_warn_only != e.deterministic_warn_only ||
      s.torch_function_state != e.torch_function_state ||
      s.function_mode_count != e.function_mode_count ||
      s.dispatch_mode_count != e.dispatch_mode_count) {
    return false;
  }
  if (s.function_mode_count == 0 && s.dispatch_mode_count == 0) return true;
  if (modes_match()) return true;
  consume_check_error();
  return false;
}

namespace {

using Entries = std::vector<std::string>;

// str() of a torch.device, e.g. "cuda:0" (never raises).
std::string device_str(PyObject* device) {
  PyObject *et, *ev, *tb;
  PyErr_Fetch(&et, &ev, &tb);
  Ref s = Ref::steal(PyObject_Str(device));
  const char* c = s ? PyUnicode_AsUTF8(s.get()) : nullptr;
  std::string out = c ? c : safe_repr(device);
  PyErr_Clear();
  PyErr_Restore(et, ev, tb);
  return out;
}

// The default device: the `device` of the topmost DeviceContext, else cpu.
template <class Modes>
std::string default_device(const Modes& modes) {
  for (auto it = modes.rbegin(); it != modes.rend(); ++it) {
    if (it->device) return device_str(it->device.get());
  }
  return "cpu";
}

template <class Modes>
std::string type_list(const Modes& modes, bool skip_device_contexts) {
  std::string out = "[";
  bool first = true;
  for (const auto& m : modes) {
    if (skip_device_contexts && m.device) continue;
    out += (first ? "" : ", ") + m.type_name;
    first = false;
  }
  return out + "]";
}

void compare_flag(Entries& out, const char* what, int32_t want, int32_t got) {
  if (want != got) {
    out.push_back(std::string(what) + " changed: expected " + enabled_text(want) + ", got " +
                  enabled_text(got));
  }
}

void compare_dtype(Entries& out, const char* what, PyObject* want, PyObject* got) {
  if (want != got) {
    out.push_back(std::string(what) + " changed: expected " + safe_repr(want) + ", got " +
                  safe_repr(got));
  }
}

}  // namespace

std::string GlobalStateMatch::explain(PyObject*) {
  Snapshot now;
  if (!read_snapshot(now)) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    std::string why = ev ? safe_repr(ev, 160) : "error";
    PyErr_Restore(et, ev, tb);
    consume_check_error();
    return "could not read torch's global state (" + why + ")";
  }
  const FcGlobalState& s = now.reading.state;
  const FcGlobalState& e = expected_;
  Entries diffs;
  compare_flag(diffs, "grad mode", e.grad_enabled, s.grad_enabled);
  compare_flag(diffs, "autocast (cpu)", e.autocast_cpu_enabled, s.autocast_cpu_enabled);
  compare_dtype(diffs, "autocast dtype (cpu)", e.autocast_cpu_dtype, s.autocast_cpu_dtype);
  compare_flag(diffs, "autocast (cuda)", e.autocast_cuda_enabled, s.autocast_cuda_enabled);
  compare_dtype(diffs, "autocast dtype (cuda)", e.autocast_cuda_dtype, s.autocast_cuda_dtype);
  compare_flag(diffs, "autocast cache", e.autocast_cache_enabled, s.autocast_cache_enabled);
  compare_dtype(diffs, "default dtype", e.default_dtype, s.default_dtype);
  compare_flag(diffs, "deterministic algorithms", e.deterministic_algorithms,
               s.deterministic_algorithms);
  compare_flag(diffs, "deterministic algorithms warn_only", e.deterministic_warn_only,
               s.deterministic_warn_only);
  if (e.torch_function_state != s.torch_function_state) {
    diffs.push_back(std::string("torch function changed: expected ") +
                    torch_function_text(e.torch_function_state) + ", got " +
                    torch_function_text(s.torch_function_state));
  }
  const std::string want_device = default_device(function_modes_);
  const std::string got_device = default_device(now.function_modes);
  if (want_device != got_device) {
    diffs.push_back("default device changed: expected " + want_device + ", got " + got_device);
  }
  const std::string want_fn = type_list(function_modes_, true);
  const std::string got_fn = type_list(now.function_modes, true);
  if (want_fn != got_fn) {
    diffs.push_back("torch function mode stack changed: expected " + want_fn + ", got " + got_fn);
  }
  const std::string want_dispatch = type_list(dispatch_modes_, false);
  const std::string got_dispatch = type_list(now.dispatch_modes, false);
  if (want_dispatch != got_dispatch) {
    diffs.push_back("dispatch mode stack changed: expected " + want_dispatch + ", got " +
                    got_dispatch);
  }
  if (diffs.empty()) {
    // Only DeviceContext entries moved without changing the default device.
    diffs.push_back("torch function mode stack changed: expected " +
                    type_list(function_modes_, false) + ", got " +
                    type_list(now.function_modes, false));
  }
  std::string out;
  for (size_t i = 0; i < diffs.size(); ++i) out += (i ? "; " : "") + diffs[i];
  return out;
}

std::string GlobalStateMatch::describe() const {
  const FcGlobalState& e = expected_;
  return std::string("GLOBAL_STATE(grad ") + enabled_text(e.grad_enabled) + ", autocast cpu " +
         enabled_text(e.autocast_cpu_enabled) + " " + safe_repr(e.autocast_cpu_dtype) +
         ", autocast cuda " + enabled_text(e.autocast_cuda_enabled) + " " +
         safe_repr(e.autocast_cuda_dtype) + ", default dtype " + safe_repr(e.default_dtype) +
         ", deterministic " + enabled_text(e.deterministic_algorithms) + ", torch function " +
         torch_function_text(e.torch_function_state) + ", function modes " +
         type_list(function_modes_, false) + ", dispatch modes " +
         type_list(dispatch_modes_, false) + ", default device " + default_device(function_modes_) +
         ")";
}

}  // namespace framecache::guards
