// Accessors that read an item of a container: value[key] (getitem), a dict's
// stored item (dict_item), a list's or a tuple's element (list_item,
// tuple_item).
//
// item(key) is Python's value[key]: it runs __getitem__ (and a dict
// subclass's __missing__), whatever the type does. dict_item, list_item and
// tuple_item read the container's own storage instead, which runs no Python
// for an exact dict with a str key, a list or a tuple: PyDict_GetItemWithError,
// not __getitem__, even for a dict subclass. On a value of another type they
// fail.
//
// Indexes: list_item(i) and tuple_item(i) take Python's meaning of i, so a
// negative i counts from the end of the sequence as it is at check time
// (L['x'][-1] is the last element, whatever the length). An index outside the
// sequence fails the guard.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// value[key] through PyObject_GetItem.
class GetItemAccessor final : public GuardAccessor {
 public:
  // key: borrowed; held strongly.
  GetItemAccessor(std::string key, std::unique_ptr<GuardManager> child, PyObject* item_key);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Ref key_;
  std::string key_repr_;
};

// A dict's stored item: PyDict_GetItemWithError on any dict (subclasses
// included; their __getitem__ and __missing__ are not called).
class DictItemAccessor final : public GuardAccessor {
 public:
  // key: borrowed, hashable; held strongly.
  DictItemAccessor(std::string key, std::unique_ptr<GuardManager> child, PyObject* item_key);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;
  bool is_stable_dict_item() const override { return stable_key_; }

 private:
  Ref key_;
  std::string key_repr_;
  bool stable_key_;  // hashing and comparing the key runs no Python
};

// Element `index` of a list (PyList_Check) or of a tuple (PyTuple_Check).
class SequenceItemAccessor final : public GuardAccessor {
 public:
  enum class Kind { kList, kTuple };
  SequenceItemAccessor(std::string key, std::unique_ptr<GuardManager> child, Kind kind,
                       Py_ssize_t index);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Kind kind_;
  Py_ssize_t index_;
};

// The source of `parent_source[key]`: "L['x']['mode']", "L['x'][3]".
std::string item_source(const std::string& parent_source, PyObject* key);

// Add (or find) these accessors on a node that is not the root; each returns
// the child node. Keys are borrowed. Two calls with equal constant keys (str,
// int, bytes, bool, None, and tuples of those) give the same child; any other
// key gives the same child only for the same object.
GuardManager& add_item(GuardManager& node, PyObject* key);
GuardManager& add_dict_item(GuardManager& node, PyObject* key);
GuardManager& add_list_item(GuardManager& node, Py_ssize_t index);
GuardManager& add_tuple_item(GuardManager& node, Py_ssize_t index);

}  // namespace framecache::guards
