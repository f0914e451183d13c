// attr_hook: recognised Python attribute hooks performed in C. Every read is
// compared with what getattr() / hasattr() give for the same object, before
// and after each change that must make the model step aside (a reassigned
// __code__ or __class__ cell, a shadowed `super`, a __getattr__ added, a
// __getattribute__ in between on the MRO) or change its answer (the map
// edited, an instance attribute shadowing the map, a property's getter
// replaced).
#include <gtest/gtest.h>

#include <string>

#include "framecache/guards/attr_hook_model.h"
#include "framecache/guards/instance_attr.h"
#include "support.h"

// A namespace of its own: the unity build compiles every test file in one unit.
namespace framecache::guards::attr_hook_test {
namespace {

namespace py = pybind11;
using Kind = attr_hook::Result::Kind;

// The hooks as transformers writes them (PretrainedConfig), plus variants
// that must not be recognised.
const char* const kSource = R"(
class Base:
    attribute_map = {"hidden_size": "n_embd", "missing_target": "nowhere"}
    class_level = "from the class"

    def __getattribute__(self, key):
        if key != "attribute_map" and key in super().__getattribute__("attribute_map"):
            key = super().__getattribute__("attribute_map")[key]
        return super().__getattribute__(key)

    @property
    def output_attentions(self):
        """A docstring does not change what the getter does."""
        return self._output_attentions

    @property
    def computed(self):
        return self._output_attentions is False

    def method(self):
        return 1

class Mixin:
    pass

class Layered:
    # The pass-through link: a spec in the instance dict makes reads go elsewhere.
    def __getattribute__(self, key):
        layer_spec = super().__getattribute__("__dict__").get("_spec")
        if layer_spec is not None:
            if key in layer_spec:
                return layer_spec[key]
        return super().__getattribute__(key)

class Config(Base, Mixin, Layered):
    def __init__(self):
        self.n_embd = 64
        self._output_attentions = False
        self.use_cache = True

class Swapped:
    # The same shape with the operands of `and` swapped: not the template.
    def __getattribute__(self, key):
        if key in super().__getattribute__("attribute_map") and key != "attribute_map":
            key = super().__getattribute__("attribute_map")[key]
        return super().__getattribute__(key)

def alias(self):
    return self.use_cache

def not_alias(self):
    return self.use_cache.real
)";

// framecache/_attr_hooks.py, run on its own, sets the recogniser; then the
// classes above.
py::dict& ns() {
  static py::dict* d = [] {
    py::module_ io = py::module_::import("io");
    py::object file = io.attr("open")(FRAMECACHE_PYTHON_SOURCE_DIR "/framecache/_attr_hooks.py",
                                      "r", py::arg("encoding") = "utf-8");
    std::string source = file.attr("read")().cast<std::string>();
    file.attr("close")();
    py::dict hooks = fctest::run_source(source, "_attr_hooks.py");
    attr_hook::set_recogniser(hooks["recognise"].ptr());
    return new py::dict(fctest::run_source(kSource, "<attr-hook>"));
  }();
  return *d;
}

std::string verdict(const py::handle& code) { return attr_hook::verdict_of(code.ptr()); }

py::str name(const char* s) {
  PyObject* raw = PyUnicode_FromString(s);
  PyUnicode_InternInPlace(&raw);
  return py::reinterpret_steal<py::str>(raw);
}

// Reads `attr` of `obj` through the model and through getattr(); they must
// agree (the same object, or both AttributeError). Returns the model's kind.
Kind read_agrees(const py::handle& obj, const char* attr, bool suppress = false) {
  attr_hook::Result r = attr_hook::read(obj.ptr(), name(attr).ptr(), suppress);
  std::string model_error;
  if (r.kind == Kind::kError) model_error = fctest::take_error();
  EXPECT_FALSE(PyErr_Occurred());
  PyObject* expected = PyObject_GetAttr(obj.ptr(), name(attr).ptr());
  std::string expected_error = expected == nullptr ? fctest::take_error() : "";
  switch (r.kind) {
    case Kind::kFound:
      // The same object; or, for a bound method (made anew by every read), an equal one.
      EXPECT_TRUE(expected != nullptr &&
                  (r.value.get() == expected ||
                   (PyMethod_Check(expected) &&
                    PyObject_RichCompareBool(r.value.get(), expected, Py_EQ) == 1)))
          << attr << ": the model and getattr disagree";
      break;
    case Kind::kAbsent:
      EXPECT_TRUE(suppress);
      EXPECT_EQ(expected, nullptr) << attr << ": absent for the model, found by getattr";
      EXPECT_EQ(expected_error.rfind("AttributeError", 0), 0u) << expected_error;
      break;
    case Kind::kError:
      EXPECT_EQ(expected, nullptr);
      EXPECT_EQ(model_error, expected_error);
      break;
    case Kind::kNotModelled:
      break;
  }
  Py_XDECREF(expected);
  return r.kind;
}

TEST(AttrHookModel, RecognisesTheTemplatesOnly) {
  py::object base = ns()["Base"];
  auto method_code = [&](const py::object& cls, const char* attr) {
    return cls.attr("__dict__")[attr].attr("__code__");
  };
  auto getter_code = [&](const char* attr) {
    return base.attr("__dict__")[attr].attr("fget").attr("__code__");
  };
  EXPECT_EQ(verdict(method_code(base, "__getattribute__")), "redirect");
  EXPECT_EQ(verdict(method_code(ns()["Layered"], "__getattribute__")), "pass_through");
  EXPECT_EQ(verdict(method_code(ns()["Swapped"], "__getattribute__")), "");
  EXPECT_EQ(verdict(ns()["alias"].attr("__code__")), "alias");
  EXPECT_EQ(verdict(getter_code("output_attentions")), "alias");
  EXPECT_EQ(verdict(ns()["not_alias"].attr("__code__")), "");
  EXPECT_EQ(verdict(getter_code("computed")), "");
  EXPECT_FALSE(PyErr_Occurred());
}

TEST(AttrHookModel, ReadsWhatGetattrReads) {
  py::object c = ns()["Config"]();
  EXPECT_TRUE(attr_hook::modelled(Py_TYPE(c.ptr())));
  for (const char* attr : {"use_cache", "n_embd", "hidden_size", "output_attentions",
                           "class_level", "computed", "method", "attribute_map"}) {
    EXPECT_EQ(read_agrees(c, attr), Kind::kFound) << attr;
  }
  EXPECT_EQ(read_agrees(c, "missing"), Kind::kError);
  EXPECT_EQ(read_agrees(c, "missing_target"), Kind::kError);
  EXPECT_EQ(read_agrees(c, "missing", true), Kind::kAbsent);
  EXPECT_EQ(read_agrees(c, "missing_target", true), Kind::kAbsent);
  EXPECT_EQ(read_agrees(ns()["Swapped"](), "x", true), Kind::kNotModelled);
  // The pass-through link's other branch: the model steps aside, getattr reads the spec.
  c.attr("_spec") = py::dict(py::arg("use_cache") = "layered");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  EXPECT_EQ(c.attr("use_cache").cast<std::string>(), "layered");
  c.attr("_spec") = py::none();
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);
}

TEST(AttrHookModel, FollowsChangesToTheInstanceTheMapAndTheProperty) {
  py::object c = ns()["Config"]();
  c.attr("n_embd") = 32;
  EXPECT_EQ(read_agrees(c, "hidden_size"), Kind::kFound);
  ns()["Base"].attr("attribute_map")["use_cache"] = "n_embd";
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);
  ns()["Base"].attr("attribute_map").attr("pop")("use_cache");
  // An instance attribute shadows the class's map.
  c.attr("__dict__")["attribute_map"] = py::dict(py::arg("use_cache") = "n_embd");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);
  c.attr("__dict__").attr("pop")("attribute_map");
  // A map that is not a dict: `in` and `[]` run its Python methods.
  py::dict scope = fctest::run_source(R"(
class Odd:
    def __contains__(self, k): return k == "use_cache"
    def __getitem__(self, k): return "n_embd"
)");
  c.attr("__dict__")["attribute_map"] = scope["Odd"]();
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);
  c.attr("__dict__").attr("pop")("attribute_map");
  // The property's getter replaced in place (property.__init__ again).
  py::object prop = ns()["Base"].attr("__dict__")["output_attentions"];
  py::object old_getter = prop.attr("fget");
  prop.attr("__init__")(ns()["not_alias"]);
  EXPECT_EQ(read_agrees(c, "output_attentions"), Kind::kFound);
  prop.attr("__init__")(old_getter);
  EXPECT_EQ(read_agrees(c, "output_attentions"), Kind::kFound);
  // The attribute an alias reads, deleted: AttributeError through the property.
  c.attr("__dict__").attr("pop")("_output_attentions");
  EXPECT_EQ(read_agrees(c, "output_attentions"), Kind::kError);
  EXPECT_EQ(read_agrees(c, "output_attentions", true), Kind::kAbsent);
}

TEST(AttrHookModel, StepsAsideWhenWhatTheBytecodeResolvesChanges) {
  py::object base = ns()["Base"];
  py::object fn = base.attr("__dict__")["__getattribute__"];
  py::object c = ns()["Config"]();
  ASSERT_EQ(read_agrees(c, "use_cache"), Kind::kFound);

  // __code__ reassigned (to a code of the same free variables).
  py::object original = fn.attr("__code__");
  fn.attr("__code__") = ns()["Swapped"].attr("__dict__")["__getattribute__"].attr("__code__");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  fn.attr("__code__") = original;
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);

  // The __class__ cell reassigned.
  py::object cell = fn.attr("__closure__")[py::int_(0)];
  cell.attr("cell_contents") = ns()["Mixin"];
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  cell.attr("cell_contents") = base;
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);

  // `super` shadowed by a global of the function's module.
  py::dict globals = fn.attr("__globals__");
  globals["super"] = py::module_::import("builtins").attr("super");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  globals.attr("pop")("super");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);

  // A __getattr__ on a base: not modelled while it is there.
  py::object mixin = ns()["Mixin"];
  py::dict scope = fctest::run_source("def __getattr__(self, name):\n    return 'fallback'\n");
  mixin.attr("__getattr__") = scope["__getattr__"];
  EXPECT_EQ(read_agrees(c, "missing", true), Kind::kNotModelled);
  py::delattr(mixin, "__getattr__");
  EXPECT_EQ(read_agrees(c, "missing", true), Kind::kAbsent);

  // A __getattribute__ between Base and object: super() no longer reaches
  // object.__getattribute__.
  scope = fctest::run_source(
      "def __getattribute__(self, name):\n    return object.__getattribute__(self, name)\n");
  mixin.attr("__getattribute__") = scope["__getattribute__"];
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  py::delattr(mixin, "__getattribute__");
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kFound);

  // __class__ assigned to a class the model does not know.
  py::object plain = fctest::run_source("class Plain:\n    pass\n")["Plain"];
  c.attr("__class__") = plain;
  EXPECT_EQ(read_agrees(c, "use_cache"), Kind::kNotModelled);
  EXPECT_FALSE(PyErr_Occurred());
}

TEST(AttrHookModel, TheGetattrCacheUsesIt) {
  py::object c = ns()["Config"]();
  InstanceAttrCache cache(InstanceAttrCache::Lookup::kGetAttr, name("hidden_size").ptr());
  InstanceAttrCache::Read r = cache.read(c.ptr());
  ASSERT_TRUE(r.found);
  EXPECT_TRUE(cache.specialised());
  EXPECT_EQ(r.value, c.attr("n_embd").ptr());
  c.attr("n_embd") = 16;
  r = cache.read(c.ptr());
  ASSERT_TRUE(r.found);
  EXPECT_EQ(r.value, c.attr("n_embd").ptr());
}

}  // namespace
}  // namespace framecache::guards::attr_hook_test
