// InstanceAttrCache: the getattr accessors' direct read of an instance's own
// storage. Every scenario compares a read with what getattr (or
// object.__getattribute__) gives for the same object, across the changes that
// must turn the fast path off: a data descriptor added to the class, __dict__
// replaced or materialised, an attribute deleted, __class__ assigned,
// __slots__, properties, modules, __getattr__ / __getattribute__ overrides.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "framecache/guards/instance_attr.h"
#include "support.h"

namespace framecache::guards {
namespace {

namespace py = pybind11;
using Lookup = InstanceAttrCache::Lookup;

const char* const kClasses = R"(
import types

class Plain:
    def __init__(self, x=1):
        self.x = x
        self.y = "y"

class Sub(Plain):
    pass

class Slotted:
    __slots__ = ("x",)
    def __init__(self):
        self.x = 1

class WithProperty:
    def __init__(self):
        self.__dict__["x"] = "instance"
    @property
    def x(self):
        return "property"

class DataDescr:
    def __get__(self, obj, owner=None):
        return "descriptor"
    def __set__(self, obj, value):
        raise AttributeError("read-only")

class NonDataDescr:
    def __get__(self, obj, owner=None):
        return "non-data"

class WithNonData:
    x = NonDataDescr()
    def __init__(self):
        self.__dict__["x"] = "instance"

class WithGetattr:
    def __init__(self):
        self.x = "instance"
    def __getattr__(self, name):
        return "fallback-" + name

class WithGetattribute:
    def __init__(self):
        self.x = "instance"
    def __getattribute__(self, name):
        return "override-" + name

class Many:
    def __init__(self):
        for i in range(40):
            setattr(self, "a%d" % i, i)
        self.x = "last"

mod = types.ModuleType("fc_test_mod")
mod.x = "module value"
ns = types.SimpleNamespace(x="namespace value")
)";

py::dict classes() {
  static py::dict* ns = new py::dict(fctest::run_source(kClasses, "<instance-attr>"));
  return *ns;
}

py::str name(const char* s) {
  PyObject* raw = PyUnicode_FromString(s);
  PyUnicode_InternInPlace(&raw);
  return py::reinterpret_steal<py::str>(raw);
}

// What the full lookup gives (new reference or null, error cleared).
py::object full_lookup(Lookup lookup, const py::handle& obj, const py::str& attr) {
  PyObject* r = lookup == Lookup::kGetAttr ? PyObject_GetAttr(obj.ptr(), attr.ptr())
                                           : PyObject_GenericGetAttr(obj.ptr(), attr.ptr());
  if (r == nullptr) PyErr_Clear();
  return py::reinterpret_steal<py::object>(r);
}

// One cache per name, as each accessor has (created on first use).
class Caches {
 public:
  explicit Caches(Lookup lookup) : lookup_(lookup) {}
  InstanceAttrCache& operator[](const py::str& attr) {
    auto it = caches_.find(attr.cast<std::string>());
    if (it == caches_.end()) {
      it = caches_
               .emplace(attr.cast<std::string>(),
                        std::make_unique<InstanceAttrCache>(lookup_, attr.ptr()))
               .first;
    }
    return *it->second;
  }
  bool specialised(const char* attr) { return (*this)[name(attr)].specialised(); }

 private:
  Lookup lookup_;
  std::map<std::string, std::unique_ptr<InstanceAttrCache>> caches_;
};

// Reads through the cache of `attr`; a found value must be the very object
// the full lookup gives. Returns whether the fast path answered.
bool read_agrees(Caches& caches, Lookup lookup, const py::handle& obj, const py::str& attr) {
  const InstanceAttrCache::Read r = caches[attr].read(obj.ptr());
  EXPECT_FALSE(r.error);
  EXPECT_FALSE(PyErr_Occurred());
  if (!r.found) return false;
  py::object expected = full_lookup(lookup, obj, attr);
  EXPECT_TRUE(expected) << "the fast path found a value the full lookup does not";
  EXPECT_EQ(r.value, expected.ptr()) << "fast path and full lookup disagree";
  return true;
}

// Instances of a class statement keep their attributes in a managed dict. The
// fast path reads that storage on 3.11 and 3.12 (cpython.h, kManagedDictReadable:
// 3.13 keeps the values inline); on 3.13 these reads take the full lookup.
constexpr bool kManagedDictFast = PY_VERSION_HEX < 0x030D0000;

TEST(InstanceAttrCache, PlainInstanceIsReadFromItsValues) {
  for (Lookup lookup : {Lookup::kGetAttr, Lookup::kGeneric}) {
    Caches cache(lookup);
    py::object a = classes()["Plain"](1), b = classes()["Plain"](2);
    EXPECT_EQ(read_agrees(cache, lookup, a, name("x")), kManagedDictFast);
    EXPECT_EQ(cache.specialised("x"), kManagedDictFast);
    EXPECT_EQ(read_agrees(cache, lookup, b, name("x")), kManagedDictFast);
    EXPECT_FALSE(read_agrees(cache, lookup, a, name("missing")))
        << "an attribute the instance does not hold goes to the full lookup";
  }
}

TEST(InstanceAttrCache, ClassChangesAreSeen) {
  py::dict ns = fctest::run_source(
      "class C:\n"
      "    def __init__(self):\n"
      "        self.x = 'instance'\n",
      "<class-changes>");
  py::object cls = ns["C"];
  py::object obj = cls();
  Caches cache(Lookup::kGetAttr);
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, obj, name("x")), kManagedDictFast);
  // A plain class attribute of the same name: the instance value still wins.
  cls.attr("x") = "class";
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, obj, name("x")), kManagedDictFast);
  // A property (data descriptor) added later shadows the instance value.
  cls.attr("x") = py::module_::import("builtins").attr("property")(
      fctest::define("def get(self):\n    return 'property'\n", "get"));
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, obj, name("x")));
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, obj, name("x")).cast<std::string>(), "property");
  // Removed again: back to the instance value.
  py::delattr(cls, "x");
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, obj, name("x")), kManagedDictFast);
  // A data descriptor set on a base class reaches the subclass too.
  py::dict ns2 = fctest::run_source(
      "class Base:\n    pass\n"
      "class D(Base):\n"
      "    def __init__(self):\n"
      "        self.x = 'instance'\n",
      "<base-changes>");
  py::object d = ns2["D"]();
  Caches cache2(Lookup::kGeneric);
  EXPECT_EQ(read_agrees(cache2, Lookup::kGeneric, d, name("x")), kManagedDictFast);
  ns2["Base"].attr("x") = classes()["DataDescr"]();
  EXPECT_FALSE(read_agrees(cache2, Lookup::kGeneric, d, name("x")));
  EXPECT_EQ(full_lookup(Lookup::kGeneric, d, name("x")).cast<std::string>(), "descriptor");
}

TEST(InstanceAttrCache, DescriptorsAndSlotsUseTheFullLookup) {
  for (const char* cls : {"Slotted", "WithProperty", "WithNonData"}) {
    for (Lookup lookup : {Lookup::kGetAttr, Lookup::kGeneric}) {
      Caches cache(lookup);
      py::object obj = classes()[cls]();
      EXPECT_FALSE(read_agrees(cache, lookup, obj, name("x"))) << cls;
    }
  }
  // The non-data descriptor's type is a Python class, which could gain a
  // __set__ later without the owner's version changing: never trusted.
  Caches cache(Lookup::kGetAttr);
  py::object obj = classes()["WithNonData"]();
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, obj, name("x")).cast<std::string>(), "instance");
  classes()["NonDataDescr"].attr("__set__") =
      fctest::define("def s(self, obj, v):\n    pass\n", "s");
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, obj, name("x")).cast<std::string>(), "non-data");
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, obj, name("x")));
  py::delattr(classes()["NonDataDescr"], "__set__");
}

TEST(InstanceAttrCache, DictReplacedMaterialisedOrDeleted) {
  Caches cache(Lookup::kGetAttr);
  py::object a = classes()["Plain"](1);
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, a, name("x")), kManagedDictFast);
  // Reading __dict__ moves the values into a real dict: read from it.
  py::object d = a.attr("__dict__");
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, a, name("x")), kManagedDictFast);
  d["x"] = 42;
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, a, name("x")), kManagedDictFast);
  if (kManagedDictFast) {
    EXPECT_EQ(cache[name("x")].read(a.ptr()).value, py::int_(42).ptr());
  }
  // A new __dict__.
  py::dict fresh;
  fresh["x"] = "fresh";
  a.attr("__dict__") = fresh;
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, a, name("x")), kManagedDictFast);
  fresh.attr("clear")();
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, a, name("x")));
  // A deleted attribute of an instance that still has its values.
  py::object b = classes()["Plain"](2);
  py::delattr(b, "x");
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, b, name("x")));
  EXPECT_FALSE(full_lookup(Lookup::kGetAttr, b, name("x")));
  // More attributes than shared keys hold: a real dict from the start.
  py::object many = classes()["Many"]();
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, many, name("x")), kManagedDictFast);
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, many, name("a39")), kManagedDictFast);
}

TEST(InstanceAttrCache, ClassAssignmentAndSubclasses) {
  Caches cache(Lookup::kGetAttr);
  py::object a = classes()["Plain"](1), s = classes()["Sub"](3);
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, a, name("x")), kManagedDictFast);
    EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, s, name("x")), kManagedDictFast);
  }
  py::object c = classes()["Plain"](5);
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, c, name("y")), kManagedDictFast);
  c.attr("__class__") = classes()["Sub"];
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, c, name("y")), kManagedDictFast);
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, c, name("y")).cast<std::string>(), "y");
}

TEST(InstanceAttrCache, GetattrAndGetattributeOverrides) {
  // __getattr__ alone: the generic lookup runs first, so an instance value is
  // what getattr gives; a missing one goes to __getattr__ through the full path.
  Caches cache(Lookup::kGetAttr);
  py::object g = classes()["WithGetattr"]();
  EXPECT_EQ(read_agrees(cache, Lookup::kGetAttr, g, name("x")), kManagedDictFast);
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, g, name("nope")));
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, g, name("nope")).cast<std::string>(), "fallback-nope");
  // __getattribute__: getattr runs it, so no fast path; object.__getattribute__ has one.
  py::object o = classes()["WithGetattribute"]();
  Caches plain(Lookup::kGetAttr), generic(Lookup::kGeneric);
  EXPECT_FALSE(read_agrees(plain, Lookup::kGetAttr, o, name("x")));
  EXPECT_FALSE(plain.specialised("x"));
  EXPECT_EQ(full_lookup(Lookup::kGetAttr, o, name("x")).cast<std::string>(), "override-x");
  EXPECT_EQ(read_agrees(generic, Lookup::kGeneric, o, name("x")), kManagedDictFast);
  EXPECT_EQ(full_lookup(Lookup::kGeneric, o, name("x")).cast<std::string>(), "instance");
}

TEST(InstanceAttrCache, ModulesAndNamespaces) {
  for (const char* holder : {"mod", "ns"}) {
    Caches cache(Lookup::kGetAttr);
    py::object obj = classes()[holder];
    // Read from their dict on every version (3.13 included: its valid version
    // tags are the non-zero ones, cpy::valid_version_tag).
    EXPECT_TRUE(read_agrees(cache, Lookup::kGetAttr, obj, name("x"))) << holder;
    EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, obj, name("missing"))) << holder;
    // __dict__ is a data descriptor of the type: full lookup.
    EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, obj, name("__dict__"))) << holder;
  }
}

TEST(InstanceAttrCache, ObjectsWithoutInstanceStorage) {
  Caches cache(Lookup::kGetAttr);
  py::object one = py::int_(1);
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, one, name("real")));
  EXPECT_FALSE(cache.specialised("real"));
  py::object cls = classes()["Plain"];  // a type: its own tp_getattro
  EXPECT_FALSE(read_agrees(cache, Lookup::kGetAttr, cls, name("__init__")));
}

}  // namespace
}  // namespace framecache::guards
