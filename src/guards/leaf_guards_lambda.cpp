// LAMBDA.
#include "framecache/guards/leaf_guards_lambda.h"

#include "framecache/guards/check_error_text.h"

namespace framecache::guards {

LambdaGuard::LambdaGuard(PyObject* fn, std::string description)
    : fn_(Ref::borrow(fn)), description_(std::move(description)) {}

int LambdaGuard::call(PyObject* value, Ref& result) const {
  result = Ref::steal(PyObject_CallOneArg(fn_.get(), value));
  if (!result) return -1;
  return PyObject_IsTrue(result.get());
}

bool LambdaGuard::check(PyObject* value) {
  Ref result;
  const int truth = call(value, result);
  if (truth < 0) {
    consume_check_error();
    return false;
  }
  return truth == 1;
}

std::string LambdaGuard::explain(PyObject* value) {
  const std::string head = "LAMBDA guard failed: " + description_;
  Ref result;
  const int truth = call(value, result);
  if (truth < 0) return head + " (raised " + take_check_error_text() + ")";
  if (truth == 0) return head + " (returned " + safe_repr(result.get(), 60) + ")";
  return head + " (it passed when called again for this message)";
}

}  // namespace framecache::guards
