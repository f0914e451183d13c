// Recognised Python attribute hooks, performed in C (see attr_hook_model.h).
#include "framecache/guards/attr_hook_model.h"

#include <array>
#include <cstdint>
#include <vector>

#include "framecache/cpython.h"

namespace framecache::guards::attr_hook {

namespace {

// A few interned names, made once. Interned strs live as long as the
// interpreter, which outlives every guard.
struct Names {
  PyObject* getattribute = nullptr;
  PyObject* getattr = nullptr;
  PyObject* super = nullptr;
  PyObject* fget = nullptr;
  PyObject* dict = nullptr;
  bool ok = false;
};
const Names& names() {
  static Names n;
  static bool made = false;
  if (made) return n;
  n.getattribute = PyUnicode_InternFromString("__getattribute__");
  n.getattr = PyUnicode_InternFromString("__getattr__");
  n.super = PyUnicode_InternFromString("super");
  n.fget = PyUnicode_InternFromString("fget");
  n.dict = PyUnicode_InternFromString("__dict__");
  n.ok = n.getattribute && n.getattr && n.super && n.fget && n.dict;
  if (!n.ok) PyErr_Clear();
  made = true;
  return n;
}

enum class Shape : uint8_t { kNone, kRedirect, kPassThrough, kAlias };

// Verdicts on code objects, each code held strongly (see the header); the
// parameter is an interned str. Bounded: past kMaxCodes, codes are classified
// again on every sight. Never freed: references must not be dropped after the
// interpreter is finalised.
constexpr size_t kMaxCodes = 256;
struct Known {
  Ref code;
  Shape shape;
  Ref param;
};
struct Registry {
  Ref recogniser;
  std::vector<Known> known;
  // Verdicts of an earlier recogniser: kept, since a read in progress may
  // hold their parameters.
  std::vector<Known> retired;
  uint64_t generation = 1;  // bumped by set_recogniser: type models rebuild
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

Shape shape_named(PyObject* s) {
  if (PyUnicode_CompareWithASCIIString(s, "redirect") == 0) return Shape::kRedirect;
  if (PyUnicode_CompareWithASCIIString(s, "pass_through") == 0) return Shape::kPassThrough;
  if (PyUnicode_CompareWithASCIIString(s, "alias") == 0) return Shape::kAlias;
  return Shape::kNone;
}

// The verdict on `code` (borrowed) and its parameter (borrowed from the
// registry; null for kNone). May run the recogniser (Python) on a first sight.
Shape classify(PyObject* code, PyObject** param) {
  *param = nullptr;
  Registry& reg = registry();
  for (const Known& k : reg.known) {
    if (k.code.get() == code) {
      *param = k.param.get();
      return k.shape;
    }
  }
  if (!reg.recogniser || !PyCode_Check(code)) return Shape::kNone;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Ref recogniser = reg.recogniser;  // the call may replace it
  Ref verdict = Ref::steal(PyObject_CallOneArg(recogniser.get(), code));
  Shape shape = Shape::kNone;
  Ref p;
  if (verdict && PyTuple_CheckExact(verdict.get()) && PyTuple_GET_SIZE(verdict.get()) == 2) {
    PyObject* s = PyTuple_GET_ITEM(verdict.get(), 0);
    PyObject* a = PyTuple_GET_ITEM(verdict.get(), 1);
    if (PyUnicode_CheckExact(s) && PyUnicode_CheckExact(a)) {
      shape = shape_named(s);
      PyObject* interned = Py_NewRef(a);
      PyUnicode_InternInPlace(&interned);
      p = Ref::steal(interned);
    }
  }
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
  if (shape == Shape::kNone) p = Ref();
  // The recogniser ran Python: another thread may have classified the code.
  for (const Known& k : reg.known) {
    if (k.code.get() == code) {
      *param = k.param.get();
      return k.shape;
    }
  }
  if (reg.known.size() >= kMaxCodes) return Shape::kNone;
  reg.known.push_back(Known{Ref::borrow(code), shape, std::move(p)});
  *param = reg.known.back().param.get();
  return shape;
}

// The tp_getattro CPython gives a class that defines __getattribute__ (or
// __getattr__): the hook (slot_tp_getattr_hook), which on its first call
// replaces itself with slot_tp_getattro when the class has no __getattr__.
// Both are static in typeobject.c, so they are read off a probe class; null if
// probing failed. Plain statics rather than a function-local static
// initialiser: the probe allocates objects, so a garbage collection in it could
// run finalizers that let another thread take the GIL and block on the
// initialiser's guard. With the GIL serialising this, the worst case is
// probing twice.
struct Slots {
  getattrofunc hook = nullptr;
  getattrofunc plain = nullptr;
};
const Slots& slots() {
  static Slots s;
  static bool probed = false;
  if (probed) return s;
  probed = true;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject* builtins = PyImport_AddModule("builtins");  // borrowed
  PyObject* fn = builtins != nullptr ? PyDict_GetItemString(PyModule_GetDict(builtins), "getattr")
                                     : nullptr;  // borrowed
  PyObject* ns = PyDict_New();
  if (ns != nullptr && fn != nullptr && PyDict_SetItemString(ns, "__getattribute__", fn) == 0) {
    PyObject* probe = PyObject_CallFunction(reinterpret_cast<PyObject*>(&PyType_Type), "s()O",
                                            "_framecache_getattribute_probe", ns);  // new
    if (probe != nullptr) {
      auto* pt = reinterpret_cast<PyTypeObject*>(probe);
      s.hook = pt->tp_getattro;
      PyObject* inst = PyObject_CallNoArgs(probe);  // new
      if (inst != nullptr) {
        // Calls builtins.getattr("x") unbound: a TypeError, but the slot has
        // been switched by then.
        Py_XDECREF(PyObject_GetAttrString(inst, "x"));
        s.plain = pt->tp_getattro;
        Py_DECREF(inst);
      }
      Py_DECREF(probe);
    }
  }
  Py_XDECREF(ns);
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
  if (s.hook == PyObject_GenericGetAttr) s.hook = nullptr;
  if (s.plain == PyObject_GenericGetAttr || s.plain == s.hook) s.plain = nullptr;
  return s;
}

// One link of a chain: a recognised __getattribute__ function, its code and
// __class__, its shape and parameter (all borrowed: the function is on the
// type's MRO, which the version tag pins; the code and parameter are held by
// the registry; the class is on the MRO).
struct Link {
  PyFunctionObject* fn = nullptr;
  PyObject* code = nullptr;
  PyObject* cls = nullptr;
  Shape shape = Shape::kNone;
  PyObject* param = nullptr;
};
constexpr int kMaxLinks = 4;
struct Model {
  PyTypeObject* type = nullptr;  // compared, never dereferenced stale
  unsigned int version = 0;
  uint64_t generation = 0;
  bool ok = false;
  int links = 0;
  std::array<Link, kMaxLinks> link;
};
constexpr size_t kModelSlots = 64;
std::array<Model, kModelSlots>& models() {
  static auto* m = new std::array<Model, kModelSlots>();
  return *m;
}

size_t slot_of(const PyTypeObject* t) {
  return static_cast<size_t>((reinterpret_cast<uintptr_t>(t) >> 4) * 0x9E3779B97F4A7C15ull >> 58);
}

// The next __getattribute__ after `cls` on t's MRO, as super(cls, obj) finds
// it: a borrowed function, `generic` when it is object's (the end of the
// chain), or null when it is anything else or `cls` is not on the MRO.
PyObject* next_after(PyTypeObject* t, PyObject* cls, bool* generic) {
  *generic = false;
  PyObject* mro = t->tp_mro;  // borrowed
  if (mro == nullptr || !PyTuple_Check(mro)) return nullptr;
  const Py_ssize_t n = PyTuple_GET_SIZE(mro);
  Py_ssize_t i = 0;
  while (i < n && PyTuple_GET_ITEM(mro, i) != cls) ++i;
  for (++i; i < n; ++i) {
    PyObject* base = PyTuple_GET_ITEM(mro, i);
    if (base == reinterpret_cast<PyObject*>(&PyBaseObject_Type)) {
      *generic = true;
      return nullptr;
    }
    auto* bt = reinterpret_cast<PyTypeObject*>(base);
    if (!PyType_HasFeature(bt, Py_TPFLAGS_HEAPTYPE)) return nullptr;
    Ref dict = Ref::steal(cpy::type_dict(bt));
    if (!dict || !PyDict_Check(dict.get())) {
      PyErr_Clear();
      return nullptr;
    }
    PyObject* found = PyDict_GetItemWithError(dict.get(), names().getattribute);  // borrowed
    if (found != nullptr) return found;  // alive: held by base's dict, on the MRO
    if (PyErr_Occurred()) {
      PyErr_Clear();
      return nullptr;
    }
  }
  return nullptr;
}

// Fills `link` for function `fn` (borrowed); false if it is no recognised hook.
bool make_link(PyObject* fn, Link* link) {
  if (!Py_IS_TYPE(fn, &PyFunction_Type)) return false;
  auto* f = reinterpret_cast<PyFunctionObject*>(fn);
  PyObject* param = nullptr;
  const Shape shape = classify(f->func_code, &param);
  if (shape != Shape::kRedirect && shape != Shape::kPassThrough) return false;
  PyObject* closure = f->func_closure;  // borrowed; read-only on a function
  if (closure == nullptr || !PyTuple_Check(closure) || PyTuple_GET_SIZE(closure) != 1) return false;
  PyObject* cell = PyTuple_GET_ITEM(closure, 0);
  if (!PyCell_Check(cell)) return false;
  PyObject* cls = PyCell_GET(cell);
  if (cls == nullptr || !PyType_Check(cls)) return false;
  link->fn = f;
  link->code = f->func_code;
  link->cls = cls;
  link->shape = shape;
  link->param = param;
  return true;
}

Model build_model(PyTypeObject* t) {
  Model m;
  const Slots& s = slots();
  const Names& n = names();
  if (!n.ok || t->tp_getattro == nullptr ||
      (t->tp_getattro != s.hook && t->tp_getattro != s.plain)) {
    return m;
  }
  // _PyType_Lookup gives the type a valid version tag. It runs no Python.
  PyObject* fn = _PyType_Lookup(t, n.getattribute);  // borrowed
  if (fn == nullptr || _PyType_Lookup(t, n.getattr) != nullptr) return m;
  if (!cpy::valid_version_tag(t)) return m;
  const unsigned int version = t->tp_version_tag;
  // Classifying may run the recogniser (Python), which could change the type:
  // the version read before must still hold after.
  for (int i = 0;; ++i) {
    if (i == kMaxLinks || !make_link(fn, &m.link[i])) return Model{};
    bool generic = false;
    fn = next_after(t, m.link[i].cls, &generic);
    if (generic) {
      m.links = i + 1;
      break;
    }
    if (fn == nullptr) return Model{};
  }
  if (!cpy::valid_version_tag(t) || t->tp_version_tag != version) return Model{};
  m.type = t;
  m.version = version;
  m.ok = true;
  return m;
}

// The model of `t` for its current version: cached; null if not modelled.
// The pointer is valid until Python runs.
const Model* model_of(PyTypeObject* t) {
  Model& slot = models()[slot_of(t)];
  const uint64_t generation = registry().generation;
  if (slot.type == t && slot.version == t->tp_version_tag && slot.generation == generation &&
      cpy::valid_version_tag(t)) {
    return slot.ok ? &slot : nullptr;
  }
  Model m = build_model(t);
  // A refusal is remembered too (for the version it was made for), unless
  // the type has no valid tag to remember it by.
  if (!m.ok && !cpy::valid_version_tag(t)) return nullptr;
  m.type = t;
  m.version = t->tp_version_tag;
  m.generation = generation;
  Model& dest = models()[slot_of(t)];
  dest = m;
  return dest.ok ? &dest : nullptr;
}

// What the run-time half of each link still resolves: its __code__ and
// __class__ cell (both assignable) and the global `super`. Runs no Python.
bool link_unchanged(const Link& l) {
  PyFunctionObject* fn = l.fn;
  if (fn->func_code != l.code) return false;
  if (PyCell_GET(PyTuple_GET_ITEM(fn->func_closure, 0)) != l.cls) return false;
  PyObject* globals = fn->func_globals;
  PyObject* builtins = fn->func_builtins;
  if (!PyDict_CheckExact(globals) || builtins == nullptr || !PyDict_CheckExact(builtins)) {
    return false;
  }
  PyObject* shadow = PyDict_GetItemWithError(globals, names().super);  // borrowed
  if (shadow != nullptr || PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  PyObject* sup = PyDict_GetItemWithError(builtins, names().super);
  if (sup == nullptr) PyErr_Clear();
  return sup == reinterpret_cast<PyObject*>(&PySuper_Type);
}

constexpr int kMaxDepth = 8;

Result failed(bool suppress) {
  Result r;
  if (suppress && PyErr_ExceptionMatches(PyExc_AttributeError)) {
    PyErr_Clear();
    r.kind = Result::Kind::kAbsent;
  } else {
    r.kind = Result::Kind::kError;
  }
  return r;
}

Result found(Ref value) {
  Result r;
  r.kind = Result::Kind::kFound;
  r.value = std::move(value);
  return r;
}

Result absent() {
  Result r;
  r.kind = Result::Kind::kAbsent;
  return r;
}

// A chain, copied out of the model cache: Python run during a read may
// rebuild the cache slot (another type, another thread).
struct Chain {
  int links = 0;
  std::array<Link, kMaxLinks> link;
};

Result read_at(PyObject* obj, PyObject* name, bool suppress, int depth);

// getattr(obj, name): modelled when obj's type is, else the interpreter's.
Result getattr_any(PyObject* obj, PyObject* name, bool suppress, int depth) {
  Result r = read_at(obj, name, suppress, depth);
  if (r.kind != Result::Kind::kNotModelled) return r;
  if (!suppress) {
    Ref v = Ref::steal(PyObject_GetAttr(obj, name));
    return v ? found(std::move(v)) : failed(false);
  }
  PyObject* v = nullptr;
  const int got = cpy::lookup_attr(obj, name, &v);
  if (got > 0) return found(Ref::steal(v));
  if (got == 0) return absent();
  return failed(true);
}

// object.__getattribute__(obj, key): PyObject_GenericGetAttr, except that an
// exact property whose getter is a recognised alias is performed here.
Result generic(PyObject* obj, PyObject* key, bool suppress, int depth) {
  if (PyUnicode_CheckExact(key) && depth < kMaxDepth) {
    PyObject* descr = _PyType_Lookup(Py_TYPE(obj), key);  // borrowed; runs no Python
    if (descr != nullptr && Py_IS_TYPE(descr, &PyProperty_Type)) {
      // A data descriptor: the generic lookup calls it, fget(obj), before
      // looking at the instance.
      Ref fget = Ref::steal(PyObject_GetAttr(descr, names().fget));  // a member: no Python
      if (!fget) return failed(suppress);
      if (Py_IS_TYPE(fget.get(), &PyFunction_Type)) {
        PyObject* alias = nullptr;
        PyObject* code = reinterpret_cast<PyFunctionObject*>(fget.get())->func_code;
        if (classify(code, &alias) == Shape::kAlias) {
          Ref hold = Ref::borrow(alias);
          return getattr_any(obj, hold.get(), suppress, depth + 1);
        }
      }
    }
  }
  Ref v = Ref::steal(suppress ? _PyObject_GenericGetAttrWithDict(obj, key, nullptr, 1)
                              : PyObject_GenericGetAttr(obj, key));
  if (v) return found(std::move(v));
  if (!PyErr_Occurred()) return absent();
  return failed(suppress);
}

// super().__getattribute__(key) from link `i`: link i+1, or the generic lookup.
Result run(const Chain& c, int i, PyObject* obj, PyObject* key, bool suppress, int depth) {
  if (i == c.links) return generic(obj, key, suppress, depth);
  const Link& l = c.link[i];
  if (l.shape == Shape::kPassThrough) {
    // spec = super().__getattribute__("__dict__").get(<param>)
    Result d = run(c, i + 1, obj, names().dict, false, depth);
    if (d.kind != Result::Kind::kFound) return d.kind == Result::Kind::kError ? failed(suppress) : d;
    if (!PyDict_CheckExact(d.value.get())) return Result{};  // `.get` would be another method
    PyObject* spec = PyDict_GetItemWithError(d.value.get(), l.param);  // borrowed
    if (spec == nullptr && PyErr_Occurred()) return failed(suppress);
    // Not None: the hook's own branch would run; only pure reads ran so far.
    if (spec != nullptr && spec != Py_None) return Result{};
    return run(c, i + 1, obj, key, suppress, depth);
  }
  // kRedirect: if key != <map> and key in super().__getattribute__(<map>):
  //                key = super().__getattribute__(<map>)[key]
  //            return super().__getattribute__(key)
  Ref k = Ref::borrow(key);
  const int differs = PyObject_RichCompareBool(key, l.param, Py_NE);
  if (differs < 0) return failed(suppress);
  if (differs == 1) {
    Result map = run(c, i + 1, obj, l.param, false, depth);
    if (map.kind != Result::Kind::kFound) {
      return map.kind == Result::Kind::kError ? failed(suppress) : map;
    }
    const int in = PySequence_Contains(map.value.get(), key);
    if (in < 0) return failed(suppress);
    if (in == 1) {
      Result again = run(c, i + 1, obj, l.param, false, depth);
      if (again.kind != Result::Kind::kFound) {
        return again.kind == Result::Kind::kError ? failed(suppress) : again;
      }
      Ref mapped = Ref::steal(PyObject_GetItem(again.value.get(), key));
      if (!mapped) return failed(suppress);
      k = std::move(mapped);
    }
  }
  return run(c, i + 1, obj, k.get(), suppress, depth);
}

Result read_at(PyObject* obj, PyObject* name, bool suppress, int depth) {
  const Model* m = model_of(Py_TYPE(obj));
  if (m == nullptr) return Result{};
  Chain c;
  c.links = m->links;
  for (int i = 0; i < c.links; ++i) {
    c.link[i] = m->link[i];
    if (!link_unchanged(c.link[i])) return Result{};
  }
  return run(c, 0, obj, name, suppress, depth);
}

}  // namespace

bool modelled(PyTypeObject* t) { return model_of(t) != nullptr; }

getattrofunc slot_getattr_hook() { return slots().hook; }

Result read(PyObject* obj, PyObject* name, bool suppress) {
  if (!PyUnicode_CheckExact(name)) return Result{};
  return read_at(obj, name, suppress, 0);
}

void set_recogniser(PyObject* recogniser) {
  Registry& reg = registry();
  reg.recogniser = Ref::borrow(recogniser);
  for (Known& k : reg.known) reg.retired.push_back(std::move(k));
  reg.known.clear();
  ++reg.generation;
}

const char* verdict_of(PyObject* code) {
  PyObject* param = nullptr;
  switch (classify(code, &param)) {
    case Shape::kRedirect:
      return "redirect";
    case Shape::kPassThrough:
      return "pass_through";
    case Shape::kAlias:
      return "alias";
    case Shape::kNone:
      break;
  }
  return "";
}

}  // namespace framecache::guards::attr_hook
