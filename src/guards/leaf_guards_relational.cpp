// OBJECT_ALIASING and NO_TENSOR_ALIASING: relations between sources.
#include "framecache/guards/leaf_guards_relational.h"

#include <algorithm>

#include "framecache/guards/root_guard_manager.h"

namespace framecache::guards {

namespace {

// "tensor" if `value` is a torch.Tensor (torch already imported), else
// "object". Slow path only; never imports torch, never raises.
std::string object_word(PyObject* value) {
  PyObject *type, *exc, *tb;
  PyErr_Fetch(&type, &exc, &tb);
  bool tensor = false;
  Ref name = Ref::steal(PyUnicode_FromString("torch"));
  Ref torch = name ? Ref::steal(PyImport_GetModule(name.get())) : Ref();
  Ref cls = torch ? Ref::steal(PyObject_GetAttrString(torch.get(), "Tensor")) : Ref();
  if (cls && PyType_Check(cls.get())) {
    // A plain subtype test: no __instancecheck__ runs.
    tensor = PyObject_TypeCheck(value, reinterpret_cast<PyTypeObject*>(cls.get()));
  }
  PyErr_Clear();
  PyErr_Restore(type, exc, tb);
  return tensor ? "tensor" : "object";
}

}  // namespace

// --- Relation ------------------------------------------------------------------

Relation::Relation(const RootGuardManager& root, std::vector<std::string> sources)
    : root_(root), sources_(std::move(sources)), seen_(sources_.size()) {}

Relation::~Relation() = default;

bool Relation::see(size_t member, PyObject* value) {
  if (poisoned_ || root_.active_checks() != 1 || seen_[member]) {
    poisoned_ = true;
    return false;
  }
  seen_[member] = Ref::borrow(value);
  ++count_;
  return relate(member, value);
}

bool Relation::can_decide_alone() const { return !poisoned_ && root_.active_checks() == 1; }

std::string Relation::explain(size_t member, PyObject* value) {
  if (poisoned_ || root_.active_checks() != 1) {
    return std::string(kind()) + " could not be checked: another check of this guard tree was in "
                                 "progress at the same time";
  }
  return explain_relate(member, value);
}

void Relation::reset() {
  clear_index();
  // Nothing recorded (the usual case when the root decided the relation in
  // bulk): no slot to empty.
  const bool any = count_ != 0;
  count_ = 0;
  // Dropping a reference may run a __del__, which may check this tree again:
  // each slot is emptied before its value is released.
  for (size_t i = 0; any && i < seen_.size(); ++i) {
    Ref drop = std::move(seen_[i]);
  }
  poisoned_ = root_.active_checks() > 1;
}

std::string Relation::describe() const {
  std::string out = std::string(kind()) + "(";
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (i) out += ", ";
    if (i == 8 && sources_.size() > 9) {
      out += "... " + std::to_string(sources_.size() - 8) + " more";
      break;
    }
    out += sources_[i];
  }
  return out + ")";
}

// --- OBJECT_ALIASING -----------------------------------------------------------

bool ObjectAliasing::relate(size_t member, PyObject* value) {
  if (count_ < 2) return true;  // the first of the two: nothing to compare yet
  return seen_[1 - member].get() == value;
}

std::string ObjectAliasing::explain_relate(size_t member, PyObject* value) {
  PyObject* other = seen_[1 - member].get();
  if (other == value) return sources_[0] + " and " + sources_[1] + " are the same object";
  return sources_[0] + " and " + sources_[1] + " are not the same object";
}

// --- NO_TENSOR_ALIASING --------------------------------------------------------

NoTensorAliasing::NoTensorAliasing(const RootGuardManager& root, std::vector<std::string> sources)
    : Relation(root, std::move(sources)) {
  // A table at most half full: short probe sequences.
  unsigned bits = 3;
  while ((size_t{1} << bits) < 2 * size()) ++bits;
  table_.assign(size_t{1} << bits, nullptr);
  // The bulk table at most a quarter full: few collisions, so few
  // mispredicted probes (it is 16 bytes a slot; 8 KiB for 100 members).
  bulk_table_.assign(size_t{1} << (bits + 1), Stamped{nullptr, 0});
  bulk_shift_ = 64 - (bits + 1);
  shift_ = 64 - bits;
  used_.reserve(size());
}

size_t NoTensorAliasing::slot_of(PyObject* value) const {
  // Fibonacci hashing of the address; objects are 16-byte aligned.
  const uint64_t h = (reinterpret_cast<uintptr_t>(value) >> 4) * 0x9E3779B97F4A7C15ull;
  size_t slot = static_cast<size_t>(h >> shift_);
  const size_t mask = table_.size() - 1;
  while (table_[slot] != nullptr && table_[slot] != value) slot = (slot + 1) & mask;
  return slot;
}

bool NoTensorAliasing::relate(size_t, PyObject* value) {
  const size_t slot = slot_of(value);
  if (table_[slot] == value) return false;  // another member holds this object
  table_[slot] = value;
  used_.push_back(slot);
  return true;
}

bool NoTensorAliasing::begin_bulk() {
  if (!can_decide_alone()) return false;
  ++bulk_stamp_;  // 64 bits: never wraps back to a stamp in the table
  return true;
}

void NoTensorAliasing::clear_index() {
  for (size_t slot : used_) table_[slot] = nullptr;
  used_.clear();
}

std::string NoTensorAliasing::explain_relate(size_t member, PyObject* value) {
  for (size_t j = 0; j < seen_.size(); ++j) {
    if (j != member && seen_[j].get() == value) {
      const size_t a = std::min(j, member), b = std::max(j, member);
      return sources_[a] + " and " + sources_[b] + " are the same " + object_word(value);
    }
  }
  return "no other source holds this object (it failed only when checked)";
}

}  // namespace framecache::guards
