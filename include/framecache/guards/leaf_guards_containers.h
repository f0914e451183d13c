// Leaf guards about a container's size and keys: LENGTH_CHECK, DICT_LENGTH,
// DICT_CONTAINS, MAPPING_KEYS_MATCH.
//
// Values passed to check()/explain() are borrowed (see guard_manager.h). These
// guards may run Python code (__len__, __contains__, keys(), a key's __eq__):
// whatever that code raises, or however it mutates the value, the guard fails
// (a fatal exception is left set) and never reads freed memory.
#pragma once

#include <Python.h>

#include <string>
#include <vector>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// len(value) == n. Exact list, tuple, dict, set and frozenset are read without
// calling __len__; anything else goes through len().
class LengthCheck final : public LeafGuard {
 public:
  explicit LengthCheck(Py_ssize_t length) : length_(length) {}
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "LENGTH_CHECK"; }

 private:
  Py_ssize_t length_;
};

// value is a dict (or a dict subclass) holding n entries. The count is the
// dict's own, not what an overridden __len__ says.
class DictLength final : public LeafGuard {
 public:
  explicit DictLength(Py_ssize_t length) : length_(length) {}
  bool check(PyObject* value) override {
    return PyDict_Check(value) && PyDict_GET_SIZE(value) == length_;
  }
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "DICT_LENGTH"; }

 private:
  Py_ssize_t length_;
};

// `key in value` is `contains` (so contains=false guards `key not in value`).
// An exact dict is searched directly; anything else through `in`
// (__contains__). A lookup that raises fails the guard either way.
class DictContains final : public LeafGuard {
 public:
  // key: borrowed; a strong reference is kept. Must be hashable.
  DictContains(PyObject* key, bool contains);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "DICT_CONTAINS"; }

 private:
  // 1 if key in value, 0 if not, -1 with an exception set.
  int lookup(PyObject* value) const;
  Ref key_;
  bool contains_;
  std::string key_repr_;
};

// The keys of a mapping are exactly `keys`, in the same order: for a dict, in
// insertion order (read without calling Python when the keys are str); for
// any other mapping, in the order its keys() yields them. Keys compare equal
// only if they have the same type (1, 1.0 and True are different keys here).
class MappingKeysMatch final : public LeafGuard {
 public:
  // keys: borrowed, each hashable; strong references are kept.
  explicit MappingKeysMatch(std::vector<Ref> keys);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "MAPPING_KEYS_MATCH"; }

 private:
  // 1 match, 0 mismatch, -1 exception set. The fast path for an exact dict.
  int match_dict(PyObject* dict) const;
  // Same, through list(value.keys()).
  int match_keys_list(PyObject* value) const;
  std::vector<Ref> keys_;
  std::string keys_repr_;
};

}  // namespace framecache::guards
