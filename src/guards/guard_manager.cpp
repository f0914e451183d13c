// GuardManager and GuardAccessor: the generic tree walk, fail-fast reordering
// and verbose failure collection.
#include "framecache/guards/guard_manager.h"

#include <algorithm>
#include <stdexcept>

#include "framecache/guards/root_guard_manager.h"

namespace framecache::guards {

bool consume_check_error() noexcept {
  if (!PyErr_Occurred()) return false;
  if (PyErr_ExceptionMatches(PyExc_Exception)) {
    PyErr_Clear();
    return false;
  }
  return true;  // KeyboardInterrupt, SystemExit, GeneratorExit: keep it set.
}

std::string safe_repr(PyObject* obj, size_t max_len) {
  if (obj == nullptr) return "<unbound>";
  PyObject* type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  std::string out;
  Ref r = Ref::steal(PyObject_Repr(obj));
  if (r) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(r.get(), &n);
    if (s) out.assign(s, static_cast<size_t>(n));
  }
  if (!r || out.empty()) {
    PyErr_Clear();
    out = "<" + type_name(obj) + " object>";
  }
  PyErr_Restore(type, value, tb);
  if (out.size() > max_len) out = out.substr(0, max_len - 3) + "...";
  return out;
}

std::string type_name(PyObject* obj) {
  if (obj == nullptr) return "<unbound>";
  return Py_TYPE(obj)->tp_name;
}

std::string a_type_name(PyObject* obj) {
  const std::string name = type_name(obj);
  const bool vowel = !name.empty() && std::string("aeiouAEIOU").find(name[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + name;
}

std::string exception_text(PyObject* exc) {
  if (exc == nullptr) return "error";
  std::string text = Py_TYPE(exc)->tp_name;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Ref s = Ref::steal(PyObject_Str(exc));
  if (s) {
    Py_ssize_t n = 0;
    const char* c = PyUnicode_AsUTF8AndSize(s.get(), &n);
    if (c != nullptr && n > 0) {
      text += ": " + std::string(c, std::min<size_t>(static_cast<size_t>(n), 160));
    }
  }
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
  return text;
}

// The kinds that read ambient state and ignore their value. A new such kind
// overrides reads_value() (or is listed here).
bool LeafGuard::reads_value() const { return std::string(kind()) != "GLOBAL_STATE"; }

// The kinds whose meaning is a predicate of the value alone (for immutable
// values, which are all a DICT_VERSION skip ever concerns). A new kind is
// listed here or overrides depends_only_on_value(); until then it is assumed
// to read more than its value, which is always safe.
bool LeafGuard::depends_only_on_value() const {
  static const char* const kValueOnly[] = {
      "TYPE_MATCH", "ID_MATCH",     "NONE_MATCH",   "TRUE_MATCH", "FALSE_MATCH",
      "NOT_NONE",   "EQUALS_MATCH", "LENGTH_CHECK", "NO_HASATTR", "FLOAT_IS_NAN",
  };
  const std::string k = kind();
  for (const char* v : kValueOnly) {
    if (k == v) return true;
  }
  return false;
}

// --- GuardAccessor ------------------------------------------------------------

GuardAccessor::GuardAccessor(std::string key, std::unique_ptr<GuardManager> child)
    : key_(std::move(key)), child_(std::move(child)) {}
GuardAccessor::~GuardAccessor() = default;

std::string GuardAccessor::explain_fetch_failure(PyObject*, const FrameInputs&) {
  return "could not be fetched";
}

bool GuardAccessor::check(PyObject* parent, const FrameInputs& in) {
  Ref value = fetch(parent, in);
  if (!value) {
    consume_check_error();
    return false;
  }
  return child_->check(value.get(), in);
}

bool GuardAccessor::check_verbose(PyObject* parent, const FrameInputs& in, VerboseState& out) {
  Ref value = fetch(parent, in);
  if (!value) {
    std::string why;
    if (PyErr_Occurred()) {
      PyObject *type, *exc, *tb;
      PyErr_Fetch(&type, &exc, &tb);
      PyErr_NormalizeException(&type, &exc, &tb);
      why = exception_text(exc);
      PyErr_Restore(type, exc, tb);
      if (consume_check_error()) return false;
    }
    const std::string reason = explain_fetch_failure(parent, in);
    if (PyErr_Occurred() && consume_check_error()) return false;
    std::string msg = child_->source() + ": " + reason;
    // The exception's words, unless they are the reason's own.
    const size_t colon = why.find(": ");
    if (!why.empty() && (colon == std::string::npos || why.compare(colon + 2, std::string::npos,
                                                                   reason) != 0)) {
      msg += " (" + why + ")";
    }
    out.failures.push_back(std::move(msg));
    return false;
  }
  return child_->check_verbose(value.get(), in, out);
}

// --- GuardManager -------------------------------------------------------------

GuardManager::GuardManager(RootGuardManager* root, std::string source)
    : root_(root), source_(std::move(source)) {}
GuardManager::~GuardManager() = default;

bool GuardManager::is_root() const { return static_cast<const GuardManager*>(root_) == this; }

bool GuardManager::check(PyObject* value, const FrameInputs& in) {
  if (export_slot_ >= 0) root_->store_export(export_slot_, value);
  if (dict_versioned_) return check_dict_node(value, in);
  if (!leaves_pass(value)) return false;
  const size_t n = accessors_.size();
  for (size_t i = 0; i < n; ++i) {
    if (!accessors_[i]->check(value, in)) {
      note_accessor_failure(i);
      return false;
    }
  }
  return true;
}

bool GuardManager::check_verbose(PyObject* value, const FrameInputs& in, VerboseState& out) {
  if (dict_versioned_) return check_verbose_dict_node(value, in, out);
  bool ok = true;
  if (!verbose_leaves(value, out, ok)) return false;
  for (const auto& acc : accessors_) {
    if (!acc->check_verbose(value, in, out)) {
      if (PyErr_Occurred()) return false;
      ok = false;
    }
  }
  return ok;
}

bool GuardManager::verbose_leaves(PyObject* value, VerboseState& out, bool& ok) {
  for (const auto& leaf : leaves_) {
    ++out.executed;
    if (!leaf->check(value)) {
      if (PyErr_Occurred()) return false;  // fatal error: stop here
      ok = false;
      std::string why = leaf->explain(value);
      if (PyErr_Occurred() && consume_check_error()) return false;
      // Guards on the root read no value: name them by kind instead of an empty source.
      out.failures.push_back((source_.empty() ? std::string(leaf->kind()) : source_) + ": " + why);
    }
  }
  return true;
}

void GuardManager::note_accessor_failure(size_t index) {
  GuardAccessor& failed = *accessors_[index];
  ++failed.fail_count_;
  // Reordering while another thread walks this tree (a guard that called
  // Python let the GIL go) would make that walk skip an accessor, so only the
  // sole checker reorders. Leaf order never changes.
  if (index == 0 || root_->active_checks_ != 1) return;
  size_t j = index;
  while (j > 0 && accessors_[j - 1]->fail_count_ < failed.fail_count_) --j;
  if (j != index) {
    std::rotate(accessors_.begin() + static_cast<std::ptrdiff_t>(j),
                accessors_.begin() + static_cast<std::ptrdiff_t>(index),
                accessors_.begin() + static_cast<std::ptrdiff_t>(index) + 1);
  }
}

void GuardManager::check_mutable() const {
  if (root_->active_checks_ != 0) {
    throw std::runtime_error("cannot add guards to a guard tree while it is being checked");
  }
  ++root_->structure_version_;
}

LeafGuard& GuardManager::add_leaf(std::unique_ptr<LeafGuard> leaf) {
  if (is_root() && leaf->reads_value()) {
    // The root has no value: such a guard would dereference null.
    throw std::invalid_argument(std::string(leaf->kind()) +
                                " guards a value, and the root has none: add it to a node such "
                                "as root.local('x')");
  }
  check_mutable();
  leaves_.push_back(std::move(leaf));
  return *leaves_.back();
}

GuardManager& GuardManager::get_or_add_accessor(const std::string& key,
                                                const std::string& child_source,
                                                const AccessorFactory& make) {
  for (auto& acc : accessors_) {
    if (acc->key() == key) return acc->child();
  }
  check_mutable();
  auto child = std::make_unique<GuardManager>(root_, child_source);
  accessors_.push_back(make(std::move(child)));
  return accessors_.back()->child();
}

void GuardManager::enable_dict_version() {
  if (is_root()) throw std::invalid_argument("dict_version() needs a dict node, not the root");
  if (dict_versioned_) return;
  check_mutable();
  dict_versioned_ = true;
}

bool GuardManager::subtree_depends_only_on_value() const {
  const uint64_t version = root_->structure_version();
  if (value_only_structure_ == version) return value_only_;
  // An export must be reached by every passing check: its subtree is never memoised.
  bool ok = export_slot_ < 0;
  for (const auto& leaf : leaves_) ok = ok && leaf->depends_only_on_value();
  for (const auto& acc : accessors_) ok = ok && acc->child().subtree_depends_only_on_value();
  value_only_ = ok;
  value_only_structure_ = version;
  return ok;
}

void GuardManager::set_export(int32_t slot) {
  if (is_root()) throw std::invalid_argument("the root has no value to export");
  if (slot < 0) throw std::invalid_argument("an export slot is a non-negative index");
  if (export_slot_ == slot) return;
  if (export_slot_ >= 0) {
    throw std::invalid_argument(source_ + " is already export " + std::to_string(export_slot_));
  }
  check_mutable();
  root_->register_export(slot, *this);
  export_slot_ = slot;
}

size_t GuardManager::num_guards() const {
  size_t n = leaves_.size();
  for (const auto& acc : accessors_) n += acc->child().num_guards();
  return n;
}

void GuardManager::render(std::string& out, int indent) const {
  const std::string pad(static_cast<size_t>(indent) * 2, ' ');
  out += pad + source_ + "\n";
  if (export_slot_ >= 0) out += pad + "  | EXPORT(" + std::to_string(export_slot_) + ")\n";
  if (dict_versioned_) {
    out += pad + "  | DICT_VERSION (unchanged immutable items are not rechecked)\n";
  }
  for (const auto& leaf : leaves_) out += pad + "  | " + leaf->describe() + "\n";
  for (const auto& acc : accessors_) {
    out += pad + "  +- " + acc->describe() + "\n";
    acc->child().render(out, indent + 2);
  }
}

}  // namespace framecache::guards
