// Accessors on containers: getitem, dict item, list item, tuple item.
#include "framecache/guards/accessors_items.h"

#include <cstdio>

namespace framecache::guards {

namespace {

// True for keys whose repr names them exactly and whose hashing and
// comparison run no Python: exact str, int, bytes, bool, None, and tuples
// of those.
bool constant_key(PyObject* key, int depth = 0) {
  if (depth > 16) return false;
  PyTypeObject* t = Py_TYPE(key);
  if (key == Py_None || t == &PyUnicode_Type || t == &PyLong_Type || t == &PyBool_Type ||
      t == &PyBytes_Type) {
    return true;
  }
  if (t == &PyTuple_Type) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); ++i) {
      if (!constant_key(PyTuple_GET_ITEM(key, i), depth + 1)) return false;
    }
    return true;
  }
  return false;
}

// What tells two keys apart for deduplicating accessors: the type and full
// repr of a constant key, the address of any other (held by the accessor, so
// the address stays unique).
std::string key_identity(PyObject* key) {
  if (constant_key(key)) {
    Ref r = Ref::steal(PyObject_Repr(key));
    if (r) {
      Py_ssize_t n = 0;
      const char* s = PyUnicode_AsUTF8AndSize(r.get(), &n);
      if (s != nullptr) return std::string(Py_TYPE(key)->tp_name) + ":" + std::string(s, n);
    }
    PyErr_Clear();
  }
  char id[32];
  std::snprintf(id, sizeof(id), "id:%p", static_cast<void*>(key));
  return id;
}

}  // namespace

std::string item_source(const std::string& parent_source, PyObject* key) {
  return parent_source + "[" + safe_repr(key, 200) + "]";
}

// --- GetItemAccessor ----------------------------------------------------------

GetItemAccessor::GetItemAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                 PyObject* item_key)
    : GuardAccessor(std::move(key), std::move(child)),
      key_(Ref::borrow(item_key)),
      key_repr_(safe_repr(item_key, 200)) {}

Ref GetItemAccessor::fetch(PyObject* parent, const FrameInputs&) {
  return Ref::steal(PyObject_GetItem(parent, key_.get()));
}

std::string GetItemAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  return "could not get item " + key_repr_ + " of " + a_type_name(parent);
}

std::string GetItemAccessor::describe() const { return "GetItem(" + key_repr_ + ")"; }

// --- DictItemAccessor ---------------------------------------------------------

DictItemAccessor::DictItemAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                   PyObject* item_key)
    : GuardAccessor(std::move(key), std::move(child)),
      key_(Ref::borrow(item_key)),
      key_repr_(safe_repr(item_key, 200)),
      stable_key_(constant_key(item_key)) {}

Ref DictItemAccessor::fetch(PyObject* parent, const FrameInputs&) {
  if (!PyDict_Check(parent)) return Ref();
  // Borrowed; null with no exception when the key is absent, with one when
  // hashing or comparing a key raised.
  return Ref::borrow(PyDict_GetItemWithError(parent, key_.get()));
}

std::string DictItemAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  if (!PyDict_Check(parent)) return "expected a dict, got " + a_type_name(parent);
  return "no key " + key_repr_ + " in a dict of " + std::to_string(PyDict_GET_SIZE(parent)) +
         " items";
}

std::string DictItemAccessor::describe() const { return "DictItem(" + key_repr_ + ")"; }

// --- SequenceItemAccessor -----------------------------------------------------

SequenceItemAccessor::SequenceItemAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                           Kind kind, Py_ssize_t index)
    : GuardAccessor(std::move(key), std::move(child)), kind_(kind), index_(index) {}

Ref SequenceItemAccessor::fetch(PyObject* parent, const FrameInputs&) {
  Py_ssize_t n;
  PyObject* const* items;
  if (kind_ == Kind::kList) {
    if (!PyList_Check(parent)) return Ref();
    n = PyList_GET_SIZE(parent);
    items = reinterpret_cast<PyListObject*>(parent)->ob_item;
  } else {
    if (!PyTuple_Check(parent)) return Ref();
    n = PyTuple_GET_SIZE(parent);
    items = reinterpret_cast<PyTupleObject*>(parent)->ob_item;
  }
  const Py_ssize_t i = index_ < 0 ? index_ + n : index_;
  if (i < 0 || i >= n) return Ref();
  return Ref::borrow(items[i]);
}

std::string SequenceItemAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  const bool list = kind_ == Kind::kList;
  if (list ? !PyList_Check(parent) : !PyTuple_Check(parent)) {
    return std::string("expected a ") + (list ? "list" : "tuple") + ", got " +
           a_type_name(parent);
  }
  const Py_ssize_t n = Py_SIZE(parent);
  return "index " + std::to_string(index_) + " out of range for a " + (list ? "list" : "tuple") +
         " of length " + std::to_string(n);
}

std::string SequenceItemAccessor::describe() const {
  return std::string(kind_ == Kind::kList ? "ListItem(" : "TupleItem(") + std::to_string(index_) +
         ")";
}

// --- builders -----------------------------------------------------------------

GuardManager& add_item(GuardManager& node, PyObject* key) {
  const std::string id = "item:" + key_identity(key);
  return node.get_or_add_accessor(id, item_source(node.source(), key),
                                  [&](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<GetItemAccessor>(id, std::move(child),
                                                                             key);
                                  });
}

GuardManager& add_dict_item(GuardManager& node, PyObject* key) {
  const std::string id = "dict_item:" + key_identity(key);
  return node.get_or_add_accessor(id, item_source(node.source(), key),
                                  [&](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<DictItemAccessor>(id, std::move(child),
                                                                              key);
                                  });
}

namespace {
GuardManager& add_sequence_item(GuardManager& node, SequenceItemAccessor::Kind kind,
                                Py_ssize_t index) {
  const std::string id = std::string(kind == SequenceItemAccessor::Kind::kList ? "list_item:"
                                                                               : "tuple_item:") +
                         std::to_string(index);
  const std::string source = node.source() + "[" + std::to_string(index) + "]";
  return node.get_or_add_accessor(id, source, [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<SequenceItemAccessor>(id, std::move(child), kind, index);
  });
}
}  // namespace

GuardManager& add_list_item(GuardManager& node, Py_ssize_t index) {
  return add_sequence_item(node, SequenceItemAccessor::Kind::kList, index);
}

GuardManager& add_tuple_item(GuardManager& node, Py_ssize_t index) {
  return add_sequence_item(node, SequenceItemAccessor::Kind::kTuple, index);
}

}  // namespace framecache::guards
